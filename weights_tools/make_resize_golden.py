#!/usr/bin/python3
"""Golden cases for module "resize": torchvision's Resize(size, BILINEAR,
antialias=True) on float32 tensors, the transform SatDiFuser's datasets apply
before Normalize (datasets/m_*.py).

Case format (docs/extraction.md):
  config  {"size": S | [H, W], "interpolation": "bilinear", "antialias": true,
           "max_size": null}
          S an int: the shorter side becomes S (torchvision Resize(int));
          [H, W]: that exact output size.
  input.image   (C, H, W) or (N, C, H, W) float32
  output.image  the resized tensor

Made with Debian's python3-torchvision 0.14.1 on python3-torch 1.13.1
(torchvision.transforms.Resize calls torch.nn.functional.interpolate(mode=
"bilinear", align_corners=False, antialias=True), i.e. aten's
_upsample_bilinear2d_aa). Without torchvision the script falls back to that
interpolate call with the same output-size rule, and says so in the notes.

Usage: /usr/bin/python3 weights_tools/make_resize_golden.py [--out golden]
"""
import argparse
import json
import os
import struct

import torch

try:
    import torchvision
    from torchvision.transforms import InterpolationMode, Resize
    HAVE_TV = True
except ImportError:  # pragma: no cover
    HAVE_TV = False


def save_safetensors(tensors, path):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().to(torch.float32)
        data = t.numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def out_size(h, w, size):
    # torchvision.transforms.functional_tensor.resize, size an int
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def resize(x, size):
    if HAVE_TV:
        return Resize(size, interpolation=InterpolationMode.BILINEAR, antialias=True)(x)
    hw = tuple(size) if isinstance(size, list) else out_size(x.shape[-2], x.shape[-1], size)
    if hw == tuple(x.shape[-2:]):
        return x
    y = x if x.dim() == 4 else x.unsqueeze(0)
    y = torch.nn.functional.interpolate(y, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return y if x.dim() == 4 else y.squeeze(0)


CASES = [
    # name, input shape, size, value kind
    ("resize_down_nonsquare", (3, 37, 53), 16, "uniform"),   # 2.3x down, odd factor, W > H
    ("resize_down_tall", (3, 61, 29), 12, "image"),          # H > W
    ("resize_down_big_factor", (3, 96, 80), 9, "uniform"),   # ~8.9x down, wide support
    ("resize_up_nonsquare", (3, 10, 7), 24, "uniform"),      # up: triangle of support 1
    ("resize_up_square", (3, 13, 13), 32, "image"),
    ("resize_exact_mixed", (2, 3, 20, 30), [33, 11], "uniform"),  # [H, W]: up in H, down in W, batch of 2
    ("resize_one_dim", (3, 40, 24), [17, 24], "image"),      # W unchanged: the width pass is skipped
    ("resize_reflectance", (3, 33, 47), 64, "s2"),           # reflectance / 4095 tile, upscaled like EuroSAT 64 -> 256
]


def make_input(shape, kind, gen):
    if kind == "uniform":
        return torch.rand(shape, generator=gen) * 2 - 1
    if kind == "s2":  # Sentinel-2 counts / 4095 clipped, as m_eurosat.py
        x = torch.randint(0, 5000, shape, generator=gen).to(torch.float32)
        return torch.clamp(x / 4095, 0, 1)
    # smooth image with edges: ramps plus a step
    c, h, w = shape[-3], shape[-2], shape[-1]
    yy = torch.linspace(0, 1, h).view(h, 1)
    xx = torch.linspace(0, 1, w).view(1, w)
    base = torch.stack([(yy * xx), (yy + xx) / 2, ((xx > 0.5).float() * 0.8 + 0.1).expand(h, w)])
    base = base[:c] + 0.05 * torch.rand((c, h, w), generator=gen)
    return base.expand(shape).contiguous() if len(shape) == 4 else base


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20250601)
    lib = (f"torchvision {torchvision.__version__} Resize" if HAVE_TV else
           "torch.nn.functional.interpolate(mode='bilinear', align_corners=False, antialias=True) "
           "(torchvision not installed; this is what its Resize calls on tensors)")
    for name, shape, size, kind in CASES:
        x = make_input(shape, kind, gen).to(torch.float32)
        y = resize(x, size)
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        case = {"module": "resize",
                "config": {"size": size, "interpolation": "bilinear", "antialias": True, "max_size": None},
                "rtol": 1e-5, "atol": 1e-6,
                "notes": f"{lib}, torch {torch.__version__} (CPU, 1 thread). input {list(shape)} '{kind}' "
                         f"(seed 20250601, in order), size {size} -> output {list(y.shape)}."}
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump(case, f, indent=2)
            f.write("\n")
        save_safetensors({"input.image": x, "output.image": y}, os.path.join(d, "tensors.safetensors"))
        print(f"{name}: {list(x.shape)} -> {list(y.shape)}")


if __name__ == "__main__":
    main()
