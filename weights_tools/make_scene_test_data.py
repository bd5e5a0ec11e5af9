#!/usr/bin/python3
"""Test data of `predict --tile` (tests/cli_predict_tiles.sh, tests/test_tiling.c), dev time only.

tests/data/scene/rgb_byte_crop.tif: rows 40..139, cols 120..239 of rasterio's RGB.byte.tif (real
Landsat 7, ../shared/data/tiff/rasterio, GDAL nodata 0 at the footprint's corners), 120x100x3 uint8,
Deflate strips of 7 rows, with the source's GeoTIFF tags (the tiepoint moved to the crop's corner).
win_X_Y.npy: the 32x32 windows at (X, Y) of that crop, (32, 32, 3) uint8, cut with numpy: what
`predict` sees of the scene when it runs on one window alone.
train/chip_K.npy + masks/chip_K.png: 8 other 32x32 windows of RGB.byte.tif (rows 200..520) and a made-up
3-class mask (0 dark, 1 mid, 2 bright: the pixel's mean over the bands against the terciles of
all chips), so a head trained on them a few epochs predicts more than one class on the crop.
Written with tifffile 2023.2.3 (Debian python3-tifffile); read back with tifffile and Pillow.
"""
import os
import numpy as np
import tifffile
from PIL import Image

SRC = "/work/shared/data/tiff/rasterio/RGB.byte.tif"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "scene")
R0, C0, H, W = 40, 120, 100, 120

with tifffile.TiffFile(SRC) as t:
    page = t.pages[0]
    a = page.asarray()  # (H, W, 3)
    tags = {k: page.tags[k].value for k in (33550, 33922, 34735, 34736, 34737, 42113)}
crop = np.ascontiguousarray(a[R0:R0 + H, C0:C0 + W])
sx, sy = tags[33550][0], tags[33550][1]
tie = list(tags[33922])
assert tie[0] == 0 and tie[1] == 0
tie[3] += C0 * sx
tie[4] -= R0 * sy
extratags = [
    (33550, 12, 3, tuple(tags[33550]), False),
    (33922, 12, 6, tuple(tie), False),
    (34735, 3, len(tags[34735]), tuple(tags[34735]), False),
    (34736, 12, len(np.atleast_1d(tags[34736])), tuple(np.atleast_1d(tags[34736])), False),
    (34737, 2, 0, tags[34737], False),
    (42113, 2, 0, tags[42113], False),
]
os.makedirs(OUT, exist_ok=True)
path = os.path.join(OUT, "rgb_byte_crop.tif")
tifffile.imwrite(path, crop, photometric="rgb", compression="zlib", rowsperstrip=7, extratags=extratags)
with tifffile.TiffFile(path) as t:
    assert (t.pages[0].asarray() == crop).all()
    print("crop", crop.shape, "tiepoint", t.pages[0].tags[33922].value, "nodata pixels", int((crop == 0).all(2).sum()))
assert (np.array(Image.open(path)) == crop).all()
for x, y in ((0, 0), (24, 24), (88, 68)):
    np.save(os.path.join(OUT, "win_%d_%d.npy" % (x, y)), np.ascontiguousarray(crop[y:y + 32, x:x + 32]))
os.makedirs(os.path.join(OUT, "train"), exist_ok=True)
os.makedirs(os.path.join(OUT, "masks"), exist_ok=True)
chips = [np.ascontiguousarray(a[200 + 40 * k:232 + 40 * k, 300 + 37 * k:332 + 37 * k]) for k in range(8)]
means = np.stack([c.astype(np.float64).mean(2) for c in chips])
lo, hi = np.percentile(means, [33.3, 66.7])
for k, c in enumerate(chips):
    m = (means[k] > lo).astype(np.uint8) + (means[k] > hi).astype(np.uint8)
    np.save(os.path.join(OUT, "train", "chip_%d.npy" % k), c)
    Image.fromarray(m, mode="L").save(os.path.join(OUT, "masks", "chip_%d.png" % k))
print("written to", OUT, "terciles", lo, hi)
