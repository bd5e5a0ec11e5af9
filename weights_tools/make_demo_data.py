#!/usr/bin/env python3
"""Writes the bundled demo dataset (tests/data/demo/) from real Sentinel-2 data.

Source: sentinel-hub/eo-learn (MIT licence) example_data: REFERENCE_SCENES.npy,
5 Sentinel-2 L1C scenes (101x100 px, 13 bands, reflectance) of one patch in
Slovenia, and LULC.npy, the patch's land-use/land-cover mask; a copy lives in
../shared/data/satellite/eo-learn/ (see its MANIFEST.md).

Demo task: 4-class segmentation, 32x32 chips on a 3x3 grid of the 3 clear
scenes (2, 3, 4) = 27 images; scenes 2 and 3 train, scene 4 split val/test.
Images: NPY (4, 32, 32) float32 reflectance, bands B02, B03, B04, B08 (so the
demo's 1-based --bands 3,2,1 picks R, G, B). Masks: 8-bit gray PNG, classes
0 forest, 1 grassland, 2 shrubland, 3 other (cultivated land, artificial
surface); eo-learn's "no data" (0) becomes 255 = ignored.

Usage: /usr/bin/python3 weights_tools/make_demo_data.py [--src DIR] [--out DIR]
"""
import argparse
import os
import struct
import zlib

import numpy as np

BANDS = [1, 2, 3, 7]  # B02, B03, B04, B08 in Sentinel Hub's L1C order
LULC_TO_DEMO = {0: 255, 1: 3, 2: 0, 3: 1, 4: 2, 8: 3}
CLASSES = "forest,grassland,shrubland,other"


def write_png_gray(path, a):
    h, w = a.shape
    raw = b"".join(b"\x00" + a[r].astype(np.uint8).tobytes() for r in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.path.join(here, "..", "..", "shared", "data", "satellite", "eo-learn"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "demo"))
    args = ap.parse_args()
    scenes = np.load(os.path.join(args.src, "REFERENCE_SCENES.npy"))  # (5, 101, 100, 13)
    lulc = np.load(os.path.join(args.src, "LULC.npy"))[:, :, 0]      # (101, 100)
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "masks"), exist_ok=True)
    rows = []
    for scene in (2, 3, 4):
        for r in range(3):
            for c in range(3):
                ident = "s%d_r%d_c%d" % (scene, r, c)
                chip = scenes[scene, r * 32:(r + 1) * 32, c * 32:(c + 1) * 32][:, :, BANDS]
                np.save(os.path.join(args.out, "images", ident + ".npy"),
                        np.ascontiguousarray(chip.transpose(2, 0, 1).astype(np.float32)))
                m = lulc[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32]
                demo = np.vectorize(LULC_TO_DEMO.get)(m).astype(np.uint8)
                write_png_gray(os.path.join(args.out, "masks", ident + ".png"), demo)
                if scene < 4:
                    split = "train"
                else:
                    split = "val" if (r * 3 + c) % 2 == 0 else "test"
                rows.append("%s,%s,masks/%s.png" % (ident, split, ident))
    with open(os.path.join(args.out, "labels.csv"), "w") as f:
        f.write("# Demo: 4-class land cover, 32x32 Sentinel-2 chips (eo-learn example data, MIT licence).\n")
        f.write("# Made by weights_tools/make_demo_data.py.\n")
        f.write("# classes: %s\n" % CLASSES)
        f.write("image,split,label\n")
        f.write("\n".join(rows) + "\n")
    print("wrote %d images to %s" % (len(rows), args.out))


if __name__ == "__main__":
    main()
