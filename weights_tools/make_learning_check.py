#!/usr/bin/env python3
"""Issue 7 "learning check": a small synthetic, linearly separable feature set in the
satdifuser feature-cache format, and the test accuracy the ORIGINAL SatDiFuser
GWFuserClassifier (yurujaja/SatDiFuser archs/classifiers.py, imported unchanged via the
shims of make_head_golden.py) reaches on it in PyTorch. tests/cli_learning.sh checks that
`satdifuser train` with the same setup reaches it within a margin.

Usage:  /usr/bin/python3 weights_tools/make_learning_check.py [--out tests/data/learning_check]

Data: N=96 images (64 train / 16 val / 16 test), 3 classes; feature_dims
{"4": [4, 4], "2": [8], "1": [8]}, save_timesteps [47, 40]; every value N(0, 1) except
that class k adds AMP to channel k of the width-2 scale at both timesteps.
Model: GWFuserClassifier with the fusers' projection_dim set to 16 (the corrected path,
`--corrected --projection-dim 16` in C), num_norm_groups 4, num_res_blocks 1.
Training: Adam lr 0.01 constant (C: --warmup-epochs 0 --min-lr 0.01), batch 16, E epochs,
cross-entropy, validation after every epoch, test accuracy of the epoch with the best
validation accuracy (first best kept), several seeds.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden_common import save_safetensors  # noqa: E402
import make_head_golden as mhg  # noqa: E402  (import shims and build())

FEATURE_DIMS = {"4": [4, 4], "2": [8], "1": [8]}
STEPS = [47, 40]
N_TRAIN, N_VAL, N_TEST = 64, 16, 16
CLASSES = 3
AMP = 1.2
EPOCHS = 30
BATCH = 16
LR = 0.01
SEEDS = [0, 1, 2, 3, 4]
CFG = {"task": "classification", "fuser": "gw", "feature_dims": FEATURE_DIMS, "projection_dim": 16,
       "num_norm_groups": 4, "num_res_blocks": 1, "save_timesteps": STEPS, "num_classes": CLASSES}


def make_data(seed=1234):
    import torch
    g = torch.Generator().manual_seed(seed)
    widths = sorted((int(k) for k in FEATURE_DIMS), reverse=True)
    n = N_TRAIN + N_VAL + N_TEST
    labels = [i % CLASSES for i in range(n)]
    perm = torch.randperm(n, generator=g).tolist()
    labels = [labels[p] for p in perm]
    images = []
    for idx in range(n):
        feats = {}
        for i in range(len(STEPS)):
            for s, w in enumerate(widths):
                c = sum(FEATURE_DIMS[str(w)])
                t = torch.randn(1, c, w, w, generator=g)
                if w == 2:
                    t[0, labels[idx]] += AMP
                feats[f"feat.{i}.{s}"] = t
        images.append(feats)
    splits = ["train"] * N_TRAIN + ["val"] * N_VAL + ["test"] * N_TEST
    return images, labels, splits


def batch(images, idxs):
    import torch
    return {STEPS[i]: [torch.cat([images[k][f"feat.{i}.{s}"] for k in idxs]) for s in range(len(FEATURE_DIMS))]
            for i in range(len(STEPS))}


def accuracy(model, images, labels, idxs):
    import torch
    model.eval()
    with torch.no_grad():
        logits, _ = model(batch(images, idxs))
    model.train()
    return float((logits.argmax(1) == torch.tensor([labels[k] for k in idxs])).float().mean())


def train(images, labels, splits, seed):
    import torch
    torch.manual_seed(seed)
    model = mhg.build(CFG)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    tr = [k for k, s in enumerate(splits) if s == "train"]
    va = [k for k, s in enumerate(splits) if s == "val"]
    te = [k for k, s in enumerate(splits) if s == "test"]
    best_val, best_test = -1.0, 0.0
    for _ in range(EPOCHS):
        order = [tr[j] for j in torch.randperm(len(tr)).tolist()]
        for b in range(0, len(order), BATCH):
            idxs = order[b:b + BATCH]
            logits, _ = model(batch(images, idxs))
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor([labels[k] for k in idxs]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        v = accuracy(model, images, labels, va)
        if v > best_val:
            best_val, best_test = v, accuracy(model, images, labels, te)
    return best_test


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "data", "learning_check"))
    args = ap.parse_args()
    mhg.setup_env()
    images, labels, splits = make_data()
    fdir = os.path.join(args.out, "features")
    os.makedirs(fdir, exist_ok=True)
    meta = {"format": "satdifuser-features/1", "feature_dims": json.dumps(FEATURE_DIMS),
            "save_timesteps": json.dumps(STEPS),
            "scales": json.dumps([[w, w] for w in sorted((int(k) for k in FEATURE_DIMS), reverse=True)])}
    with open(os.path.join(args.out, "labels.csv"), "w") as f:
        f.write("image,split,label\n")
        for k, feats in enumerate(images):
            name = f"img{k:03d}"
            save_safetensors(feats, os.path.join(fdir, name + ".safetensors"), meta)
            f.write(f"{name},{splits[k]},{labels[k]}\n")
    accs = [train(images, labels, splits, s) for s in SEEDS]
    ref = {"model": "original GWFuserClassifier, fusers' projection_dim 16 (C: --corrected --projection-dim 16)",
           "num_norm_groups": 4, "num_res_blocks": 1, "optimizer": "Adam lr 0.01 constant, no weight decay",
           "epochs": EPOCHS, "batch_size": BATCH, "selection": "test accuracy at the best validation accuracy",
           "seeds": SEEDS, "test_accuracy": accs, "test_accuracy_mean": sum(accs) / len(accs),
           "test_accuracy_min": min(accs), "amp": AMP}
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print(json.dumps(ref))


if __name__ == "__main__":
    main()
