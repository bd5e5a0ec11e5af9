#!/usr/bin/env python3
"""Times PyTorch (CPU, float32, no_grad, 2 threads by default) on the shapes of
tests/bench_kernels.c and writes build/bench_pytorch.json, which `make bench`
reads to print C/PyTorch ratios. Op names must match the C bench's.

    /usr/bin/python3 weights_tools/bench_pytorch.py [--threads 2] [--out build/bench_pytorch.json] [--quick]
        [--openblas-coretype SkylakeX]

GEMMs go through torch.mm / F.linear (the system BLAS: see "blas" in the JSON,
from torch.__config__.show() and the libblas alternative), convolutions through
F.conv2d (oneDNN), attention the way diffusers' AttnProcessor does it on
PyTorch 1.x: heads to batch, baddbmm, softmax, bmm, back.
"""
import argparse
import json
import os
import subprocess
import sys
import time


def best_time(fn, min_total):
    fn()
    best, total, reps = 1e30, 0.0, 0
    while reps < 5 or total < min_total:
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        total += t
        best = min(best, t)
        reps += 1
        if reps >= 50:
            break
    return best


# The same lists as tests/bench_kernels.c.
GEMMS = [  # (trans_b, M, N, K)
    (0, 1024, 1024, 1024), (0, 2048, 2048, 2048),
    (0, 320, 4096, 2880), (0, 320, 1024, 2880), (0, 640, 1024, 5760), (0, 640, 256, 5760),
    (0, 1280, 256, 11520), (0, 1280, 64, 11520),
    (1, 4096, 320, 320), (1, 4096, 2560, 320), (1, 4096, 320, 1280), (1, 1024, 640, 640),
]
CONVS = [  # (Cin, HW, Cout, k, stride, pad_top, pad_left, pad_bottom, pad_right)
    (4, 64, 320, 3, 1, 1, 1, 1, 1), (320, 64, 320, 3, 1, 1, 1, 1, 1), (320, 32, 320, 3, 1, 1, 1, 1, 1),
    (640, 32, 640, 3, 1, 1, 1, 1, 1), (640, 16, 640, 3, 1, 1, 1, 1, 1), (1280, 16, 1280, 3, 1, 1, 1, 1, 1),
    (1280, 8, 1280, 3, 1, 1, 1, 1, 1), (320, 64, 320, 3, 2, 1, 1, 1, 1), (320, 32, 640, 1, 1, 0, 0, 0, 0),
    (3, 256, 128, 3, 1, 1, 1, 1, 1), (128, 256, 128, 3, 1, 1, 1, 1, 1), (128, 256, 128, 3, 2, 0, 0, 1, 1),
    (256, 128, 256, 3, 1, 1, 1, 1, 1), (512, 64, 512, 3, 1, 1, 1, 1, 1),
]
ATTENTIONS = [  # (heads, Nq, Nk, head_dim)
    (5, 1024, 1024, 64), (10, 1024, 1024, 64), (5, 4096, 4096, 64), (10, 4096, 4096, 64), (5, 4096, 77, 64),
    (1, 4096, 4096, 512),
]


# glibc malloc without mmap for big blocks: torch's tensors then do not page-fault on every allocation
# (the C code reuses its buffers).
MALLOC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776"


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return -1.0


def apply_bench_env(args):
    """--malloc no-mmap (glibc reads its tunables at start-up: the process runs again with them set)
    and --openblas-coretype, as the model and training benches take them."""
    if args.malloc == "no-mmap" and MALLOC_TUNABLES not in os.environ.get("GLIBC_TUNABLES", ""):
        old = os.environ.get("GLIBC_TUNABLES", "")
        os.environ["GLIBC_TUNABLES"] = (old + ":" if old else "") + MALLOC_TUNABLES
        if os.environ.get("SATDIFUSER_BENCH_REEXEC") != "1":
            os.environ["SATDIFUSER_BENCH_REEXEC"] = "1"
            sys.stdout.flush()
            os.execv(sys.executable, [sys.executable] + sys.argv)
    if args.openblas_coretype:
        os.environ["OPENBLAS_CORETYPE"] = args.openblas_coretype


def blas_name():
    try:
        out = subprocess.run(["update-alternatives", "--query", "libblas.so.3-x86_64-linux-gnu"],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Value:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="build/bench_pytorch.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--openblas-coretype", default=None,
                    help="set OPENBLAS_CORETYPE before torch loads OpenBLAS (e.g. SkylakeX: its AVX-512 kernels)")
    args = ap.parse_args()
    if args.openblas_coretype:
        os.environ["OPENBLAS_CORETYPE"] = args.openblas_coretype
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("bench_pytorch: torch is not importable (use /usr/bin/python3 with python3-torch)")
        return 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    min_total = 0.2 if args.quick else 1.0
    ops = {}

    def record(name, seconds, flops):
        ops[name] = seconds
        print("%-44s %9.2f ms %8.1f GFLOP/s" % (name, seconds * 1e3, flops / seconds * 1e-9), flush=True)

    config = torch.__config__.show()
    print("torch %s, %d threads, libblas: %s" % (torch.__version__, torch.get_num_threads(), blas_name()))
    print("OPENBLAS_CORETYPE=%s" % os.environ.get("OPENBLAS_CORETYPE", "(unset)"))
    with torch.no_grad():
        for tb, M, N, K in GEMMS[:3] if args.quick else GEMMS:
            A = torch.rand(M, K) * 2 - 1
            if tb:
                W = torch.rand(N, K) * 2 - 1  # nn.Linear weight (out, in)
                fn = lambda: F.linear(A, W)
                name = "gemm %dx%dx%d (B^T)" % (M, N, K)
            else:
                B = torch.rand(K, N) * 2 - 1
                fn = lambda: torch.mm(A, B)
                name = "gemm %dx%dx%d" % (M, N, K)
            record(name, best_time(fn, min_total), 2.0 * M * N * K)
        for Cin, HW, Cout, k, s, pt, pl, pb, pr in CONVS[:3] if args.quick else CONVS:
            x = torch.rand(1, Cin, HW, HW) * 2 - 1
            w = torch.rand(Cout, Cin, k, k) * 2 - 1
            b = torch.rand(Cout)
            if pt == pb and pl == pr:
                fn = lambda: F.conv2d(x, w, b, stride=s, padding=(pt, pl))
            else:
                fn = lambda: F.conv2d(F.pad(x, (pl, pr, pt, pb)), w, b, stride=s)
            Ho = (HW + pt + pb - k) // s + 1
            Wo = (HW + pl + pr - k) // s + 1
            name = "conv%dx%d s%d %d->%d @%dx%d" % (k, k, s, Cin, Cout, HW, HW)
            record(name, best_time(fn, min_total), 2.0 * Cout * Ho * Wo * Cin * k * k)
        for heads, Nq, Nk, hd in ATTENTIONS[:2] if args.quick else ATTENTIONS:
            D = heads * hd
            q = torch.rand(1, Nq, D) * 2 - 1
            k_ = torch.rand(1, Nk, D) * 2 - 1
            v = torch.rand(1, Nk, D) * 2 - 1
            scale = hd ** -0.5

            def attn():
                qb = q.reshape(1, Nq, heads, hd).permute(0, 2, 1, 3).reshape(heads, Nq, hd)
                kb = k_.reshape(1, Nk, heads, hd).permute(0, 2, 1, 3).reshape(heads, Nk, hd)
                vb = v.reshape(1, Nk, heads, hd).permute(0, 2, 1, 3).reshape(heads, Nk, hd)
                scores = torch.baddbmm(torch.empty(heads, Nq, Nk), qb, kb.transpose(-1, -2), beta=0, alpha=scale)
                probs = scores.softmax(dim=-1)
                o = torch.bmm(probs, vb)
                return o.reshape(1, heads, Nq, hd).permute(0, 2, 1, 3).reshape(1, Nq, D)

            name = "attention h%d Nq%d Nk%d hd%d" % (heads, Nq, Nk, hd)
            record(name, best_time(attn, min_total), 4.0 * Nq * Nk * hd * heads)
    # Whole-model forwards (UNet 32x32/64x64, VAE encoder 256/512, text encoder) with the C
    # bench's random weights go here, under the names the C bench prints, once the models exist.
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas_name(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
        "config": config,
        "ops": ops,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
