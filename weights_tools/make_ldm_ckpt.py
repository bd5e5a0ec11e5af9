#!/usr/bin/env python3
"""tests/data/tiny_ldm.ckpt: tests/data/tiny_ldm.safetensors (the tiny pipeline in the LDM single-file
layout, weights_tools/make_ldm_checkpoint.py) saved as a PyTorch Lightning-style checkpoint, as the
CompVis / Stability .ckpt files are: torch.save({"state_dict": {...}, "epoch", "global_step",
"pytorch-lightning_version"}) in torch's zip format. `satdifuser convert --from tiny_ldm.ckpt` must give the
same pipeline folder as from the safetensors file (tests/cli_torch.sh).

Usage: /usr/bin/python3 weights_tools/make_ldm_ckpt.py   (Debian python3-torch 1.13; deterministic)
"""
import collections
import json
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "tests", "data", "tiny_ldm.safetensors")
OUT = os.path.join(HERE, "..", "tests", "data", "tiny_ldm.ckpt")
DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def load_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = collections.OrderedDict()
    for name, e in header.items():
        if name == "__metadata__":
            continue
        lo, hi = e["data_offsets"]
        if e["dtype"] == "BF16":
            raw = np.frombuffer(b[8 + n + lo:8 + n + hi], dtype=np.int16).copy()
            out[name] = torch.from_numpy(raw).view(torch.bfloat16).reshape(e["shape"])
        else:
            arr = np.frombuffer(b[8 + n + lo:8 + n + hi], dtype=DT[e["dtype"]]).reshape(e["shape"]).copy()
            out[name] = torch.from_numpy(arr)
    return out


def main():
    sd = load_safetensors(SRC)
    ckpt = {"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.4.2", "state_dict": sd}
    torch.save(ckpt, OUT)
    back = torch.load(OUT)["state_dict"]
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    print("wrote", OUT, len(sd), "tensors")


if __name__ == "__main__":
    main()
