# References for tests/cli_mixed_sizes.sh: real rasters of ../shared/data preprocessed by torch
# (not by satdifuser) as torchvision 0.14 does it for a tensor: x / 255 (float32), Resize(N) =
# F.interpolate(bilinear, antialias=True) to (N, int(N * long / short)) or Resize((N, N)), then
# CenterCrop(N) with top = int(round((H - N) / 2.0)) (Python's round: half to even). Saved as
# (3, N, N) float32 NPY in [0, 1]; tests/test_preprocess.c compares preprocess_image of the
# original file (--scale 255 with --crop center / --resize exact) with them, normalised, bit for bit.
# Run from the repository root: /usr/bin/python3 tests/data/resize_crop/make_refs.py
import numpy as np
import torch
import torch.nn.functional as F

D = "../shared/data/tiff"
N = 32

def resize(x, h, w):
    return F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]

def shorter(x):
    h, w = x.shape[1:]
    if w <= h:
        return resize(x, int(N * h / w), N)
    return resize(x, N, int(N * w / h))

def center_crop(x):
    h, w = x.shape[1:]
    top, left = int(round((h - N) / 2.0)), int(round((w - N) / 2.0))
    return x[:, top:top + N, left:left + N]

for name, path in [("colorado", "rio-tiler/colorado_CL_1"), ("tiled", "image-tiff/tiled-rgb-u8"),
                   ("oxford", "image-tiff/oxford")]:
    x = torch.from_numpy(np.load("%s/%s.npy" % (D, path)).astype(np.float32) / np.float32(255))
    crop = center_crop(shorter(x))
    np.save("tests/data/resize_crop/%s_crop%d.npy" % (name, N), crop.numpy().astype(np.float32))
    exact = resize(x, N, N)
    np.save("tests/data/resize_crop/%s_exact%d.npy" % (name, N), exact.numpy().astype(np.float32))
    print(name, tuple(x.shape), "->", tuple(shorter(x).shape), "crop at",
          int(round((shorter(x).shape[1] - N) / 2.0)), int(round((shorter(x).shape[2] - N) / 2.0)))
