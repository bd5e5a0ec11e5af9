#!/usr/bin/env python3
"""GeoTIFFs with band descriptions for `extract --bands NAMES` (issue 19): the GDAL_METADATA tag
42112 as GDAL writes it (one <Item name="DESCRIPTION" sample="i" role="description"> per band,
0-based), written by PIL (not by our reader's code). Output: tests/data/geobench/described_*.tif.
  described_rgb.tif     8x8 RGB uint8 (little-endian), descriptions "nir", "Red", "green & more" (escaped
                        as &amp;), beside dataset-wide and OFFSET items that must be skipped
  described_none.tif    the same pixels without descriptions
  described_bigtiff_mm.tif  the same pixels and metadata as a big-endian BigTIFF (written here with
                        struct, since PIL writes neither), metadata stored after the pixels
Run: /usr/bin/python3 weights_tools/make_described_tiff.py (from the repository root)."""
import numpy as np
from PIL import Image, TiffImagePlugin

rng = np.random.default_rng(19)
px = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
xml = ('<GDALMetadata>\n'
       '  <Item name="AREA_OR_POINT">Area</Item>\n'
       '  <Item name="DESCRIPTION" sample="0" role="description">nir</Item>\n'
       '  <Item name="OFFSET" sample="0" role="offset">0</Item>\n'
       '  <Item name="DESCRIPTION" sample="1" role="description">Red</Item>\n'
       '  <Item name="DESCRIPTION" sample="2" role="description">green &amp; more</Item>\n'
       '</GDALMetadata>\n')
im = Image.fromarray(px, "RGB")
info = TiffImagePlugin.ImageFileDirectory_v2()
info[42112] = xml
info.tagtype[42112] = 2  # ASCII
im.save("tests/data/geobench/described_rgb.tif", tiffinfo=info)
im.save("tests/data/geobench/described_none.tif")


def bigtiff_mm(path, pixels, text):
    """A minimal big-endian BigTIFF: one strip, uncompressed, RGB uint8, GDAL_METADATA after it."""
    import struct
    h, w, c = pixels.shape
    data = pixels.tobytes()
    meta = text.encode() + b"\0"
    ifd_off = 16
    entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 16, 1, None), (277, 3, 1, c), (278, 3, 1, h), (279, 16, 1, len(data)), (284, 3, 1, 1),
               (42112, 2, len(meta), None)]
    ifd_len = 8 + 20 * len(entries) + 8
    strip_off = ifd_off + ifd_len
    meta_off = strip_off + len(data)
    out = bytearray(b"MM" + struct.pack(">HHHQ", 43, 8, 0, ifd_off))
    out += struct.pack(">Q", len(entries))
    for tag, typ, cnt, val in entries:
        if tag == 258:
            field = struct.pack(">HHHH", 8, 8, 8, 0)
        elif tag == 273:
            field = struct.pack(">Q", strip_off)
        elif tag == 42112:
            field = struct.pack(">Q", meta_off)
        elif typ == 3:
            field = struct.pack(">H", val) + b"\0" * 6  # left-justified in the 8-byte field
        else:
            field = struct.pack(">Q", val)
        out += struct.pack(">HHQ", tag, typ, cnt) + field
    out += struct.pack(">Q", 0)
    assert len(out) == strip_off
    out += data + meta
    open(path, "wb").write(bytes(out))


bigtiff_mm("tests/data/geobench/described_bigtiff_mm.tif", px, xml)
print("written")
