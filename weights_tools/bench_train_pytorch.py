#!/usr/bin/env python3
"""Times one training step of the ORIGINAL SatDiFuser fusers + heads with PyTorch, on the shapes of
tests/bench_train.c, and writes build/bench_train_pytorch.json, which bench_train reads to print
ratio = torch time / C time per pair (pair names match the C bench's).

    /usr/bin/python3 weights_tools/bench_train_pytorch.py [--threads 2] [--only PREFIX] [--reps N]
        [--openblas-coretype SkylakeX] [--malloc no-mmap|default] [--out build/bench_train_pytorch.json]

Models: yurujaja/SatDiFuser @ 51148cb (archs/classifiers.py, segmenters.py, aggregation_networks.py),
imported unchanged from $SATDIFUSER_REF/SatDiFuser as weights_tools/make_head_golden.py does (an
fvcore weight_init stand-in, SyncBatchNorm -> BatchNorm2d, which is what it runs on one device), built
with the arguments utils/tasks.py create_decoder passes: feature_dims {32: [320]*6, 16: [640]*6,
8: [1280]*6, 4: [1280]*3}, projection_dim 384, save_timesteps [47, 45, 40], num_classes 10 (linear) /
7 (UPerNet: channels 512, pool_scales (1, 2, 3, 6), rescales (1, 1, 1, 1), output 256x256), MoE
num_experts 8, top_k 2 (configs/_base_/satdifuser.yaml); their own random init. The MoE stays in its
dense warm-up phase over these few steps, as in the C bench.
A step is run.py's inner loop: optimizer.zero_grad(set_to_none=True) (torch 2.x's default, which
run.py's torch 2.2 uses), model.train() forward on a batch of 8 random feature pyramids, nn.CrossEntropyLoss,
backward, torch.optim.Adam(lr 0.01, weight_decay 0 as configs/*_exp.yaml).step(). Best of N after a
warm-up step, torch.set_num_threads(--threads) (the C bench's thread count).

OPENBLAS_CORETYPE / --malloc: as weights_tools/bench_models_pytorch.py (SkylakeX kernels of the system
OpenBLAS; glibc malloc without mmap for big blocks, so torch's tensors do not page-fault on every
allocation, as the C code reuses its buffers). Convolutions go through oneDNN (mkldnn), not BLAS.
"""
import argparse
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_pytorch import apply_bench_env, blas_name, load_average  # noqa: E402  (shared bench setup)

FEATURE_DIMS = {"32": [320] * 6, "16": [640] * 6, "8": [1280] * 6, "4": [1280] * 3}
SAVE_TIMESTEPS = [47, 45, 40]
BATCH = 8
OUT_HW = 256
# (name as in the C bench, fuser, segmentation, timed steps after one warm-up)
PAIRS = [
    ("gw_linear", "gw", False, 5), ("lw_linear", "lw", False, 5), ("moe_linear", "moe", False, 3),
    ("gw_upernet", "gw", True, 4), ("lw_upernet", "lw", True, 4), ("moe_upernet", "moe", True, 3),
]




def make_model(fuser, seg):
    import make_head_golden as mhg
    cfg = dict(task="segmentation" if seg else "classification", fuser=fuser, feature_dims=FEATURE_DIMS,
               projection_dim=384, num_norm_groups=32, num_res_blocks=1, save_timesteps=SAVE_TIMESTEPS,
               num_classes=7 if seg else 10)
    if fuser == "moe":
        cfg.update(num_experts=8, top_k=2)
    if seg:
        cfg.update(channels=512, pool_scales=[1, 2, 3, 6], rescales=[1, 1, 1, 1])
    return mhg.build(cfg)


def make_batch(torch, seg, seed):
    g = torch.Generator().manual_seed(seed)
    feats = {}
    for t in SAVE_TIMESTEPS:
        scales = []
        for w in sorted((int(k) for k in FEATURE_DIMS), reverse=True):
            c = sum(FEATURE_DIMS[str(w)])
            scales.append(torch.randn(BATCH, c, w, w, generator=g) * 1.0 + 0.3 * torch.randn(BATCH, c, 1, 1, generator=g))
        feats[t] = scales
    if seg:
        labels = torch.randint(0, 7, (BATCH, OUT_HW, OUT_HW), generator=g)
    else:
        labels = torch.randint(0, 10, (BATCH,), generator=g)
    return feats, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="build/bench_train_pytorch.json")
    ap.add_argument("--only", default=None, help="prefix of " + ", ".join(p[0] for p in PAIRS))
    ap.add_argument("--reps", type=int, default=0, help="timed steps per pair (default: as the C bench)")
    ap.add_argument("--openblas-coretype", default="SkylakeX",
                    help="OPENBLAS_CORETYPE for torch's BLAS (default SkylakeX; '' keeps the environment's)")
    ap.add_argument("--malloc", choices=("no-mmap", "default"), default="no-mmap")
    args = ap.parse_args()
    apply_bench_env(args)
    load_start = load_average()
    try:
        import torch
    except ImportError:
        print("bench_train_pytorch: torch is not importable (use /usr/bin/python3 with python3-torch)")
        return 1
    import make_head_golden as mhg
    mhg.setup_env()  # fvcore stand-in, the original code on sys.path, SyncBatchNorm -> BatchNorm2d
    torch.use_deterministic_algorithms(False)  # setup_env turns it on for golden files; torch's default here
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("torch %s, %d threads, libblas: %s, OPENBLAS_CORETYPE=%s, GLIBC_TUNABLES=%s, load average %.2f"
          % (torch.__version__, torch.get_num_threads(), blas_name(), os.environ.get("OPENBLAS_CORETYPE", ""),
             os.environ.get("GLIBC_TUNABLES", ""), load_start), flush=True)
    ops, means, runs, parts, nparams, when, losses = {}, {}, {}, {}, {}, {}, {}
    for name, fuser, seg, reps in PAIRS:
        if args.only and not name.startswith(args.only):
            continue
        n = args.reps if args.reps > 0 else reps
        model = make_model(fuser, seg)
        model.train()
        nparams[name] = sum(p.numel() for p in model.parameters())
        opt = torch.optim.Adam([{"params": model.parameters(), "lr": 0.01}], lr=0.01, weight_decay=0.0)
        crit = torch.nn.CrossEntropyLoss(ignore_index=-100)
        feats, labels = make_batch(torch, seg, 1)
        kw = dict(output_shape=(OUT_HW, OUT_HW)) if seg else {}
        print("%s (%.2f M parameters): warm-up + %d steps" % (name, nparams[name] * 1e-6, n), flush=True)

        def step():
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            logits, _ = model(feats, **kw)
            loss = crit(logits, labels)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            return t3 - t0, (t1 - t0, t2 - t1, t3 - t2), float(loss)

        step()
        times, best_parts = [], None
        for k in range(n):
            t, p, loss = step()
            times.append(t)
            if t == min(times):
                best_parts = p
            print("    step %d: %.3f s (forward %.3f, backward %.3f, adam %.3f), loss %.4f"
                  % (k + 1, t, p[0], p[1], p[2], loss), flush=True)
        ops[name], means[name], runs[name] = min(times), sum(times) / n, times
        parts[name] = dict(forward=best_parts[0], backward=best_parts[1], adam=best_parts[2])
        losses[name] = loss
        when[name] = time.strftime("%Y-%m-%d %H:%M:%S")
        print("%-12s best %.3f s  mean %.3f s" % (name, ops[name], means[name]), flush=True)
        del model, opt, feats
    load_end = load_average()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("peak RSS %.0f MiB; load average at start %.2f, at end %.2f" % (rss_mib, load_start, load_end))
    result = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "blas": blas_name(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""), "malloc": args.malloc,
        "load_average": [load_start, load_end], "peak_rss_mib": rss_mib,
        "ops": ops, "mean": means, "runs": runs, "parts": parts, "params": nparams, "loss_last": losses,
        "measured_at": when,
    }
    # keep the pairs of an earlier run that this one did not time (--only)
    if os.path.exists(args.out):
        try:
            with open(args.out) as f:
                old = json.load(f)
            for field in ("ops", "mean", "runs", "parts", "params", "loss_last", "measured_at"):
                for k, v in old.get(field, {}).items():
                    result[field].setdefault(k, v)
        except (OSError, ValueError):
            pass
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
