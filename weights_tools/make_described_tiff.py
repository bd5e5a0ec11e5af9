#!/usr/bin/env python3
"""GeoTIFFs with band descriptions for `extract --bands NAMES` (issue 19): the GDAL_METADATA tag
42112 as GDAL writes it (one <Item name="DESCRIPTION" sample="i" role="description"> per band,
0-based), written by PIL (not by our reader's code). Output: tests/data/geobench/described_*.tif.
  described_rgb.tif     8x8 RGB uint8 (little-endian), descriptions "nir", "Red", "green & more" (escaped
                        as &amp;), beside dataset-wide and OFFSET items that must be skipped
  described_none.tif    the same pixels without descriptions
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
print("written")
