#!/usr/bin/python3
"""tests/data/torch/golden_bin/<case>.weights.bin: the weights.safetensors of a few golden cases
re-saved by torch.save (zip format, torch 1.13's default) as a state_dict (collections.OrderedDict,
same names, dtypes, shapes and values), so tests/cli_torch.sh can run those cases with weights.bin
in place of weights.safetensors (issue 16: "the golden cases also pass with .bin weights").

Usage:  /usr/bin/python3 weights_tools/make_golden_bin.py     (Debian python3-torch 1.13.1)
Deterministic (torch's zip entries carry no time stamps): a rerun writes the same bytes. Checks
itself: each file is read back with torch.load and compared bit for bit with the safetensors.
"""
import collections
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from golden_common import load_safetensors  # noqa: E402  (our own safetensors reader)

OUT = os.path.join(ROOT, "tests", "data", "torch", "golden_bin")
# one case per module, the smaller ones (about 1 MB in all)
CASES = ["unet_metadata", "vae_encoder_a", "clip_text_gelu", "head_gw_multilabel_t2", "train_gw_multilabel"]


def same_bits(a, b):
    import torch
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    if a.numel() == 0:
        return True
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.contiguous().view(view), b.contiguous().view(view))


def main():
    import torch
    os.makedirs(OUT, exist_ok=True)
    for case in CASES:
        src = os.path.join(ROOT, "golden", case, "weights.safetensors")
        tensors = load_safetensors(src)  # header order (names sorted, as golden_common writes them)
        sd = collections.OrderedDict((k, tensors[k].contiguous()) for k in tensors)
        path = os.path.join(OUT, f"{case}.weights.bin")
        torch.save(sd, path)  # to a path: the archive prefix is the stem, "<case>.weights/"
        back = torch.load(path, map_location="cpu")
        assert list(back) == list(sd), case
        for k, v in sd.items():
            assert same_bits(back[k], v), f"{case}: {k} differs after torch.load"
        dtypes = sorted({str(v.dtype).replace("torch.", "") for v in sd.values()})
        print(f"{path}: {len(sd)} tensors ({', '.join(dtypes)}), {os.path.getsize(path)} bytes "
              f"(safetensors {os.path.getsize(src)})")


if __name__ == "__main__":
    main()
