#!/usr/bin/env python3
"""Times the whole-model forwards of tests/bench_models.c with PyTorch and writes
build/bench_models_pytorch.json, which bench_models reads to print C/PyTorch ratios
(torch time / C time). Op names match the C bench's.

    PYTHONPATH=/work/ref/diffusers/src:/work/ref/transformers/src:/work/ref/hfhub/src:/work/ref/ftfy \
      /usr/bin/python3 weights_tools/bench_models_pytorch.py [--threads 2] [--quick] [--only NAME] [--reps N]
        [--openblas-coretype SkylakeX] [--out build/bench_models_pytorch.json]

Models: diffusers 0.17.0 UNet2DConditionModel (SD 2.1 config), AutoencoderKL (SD VAE; only
encode() is timed: encoder + quant_conv + the posterior) and transformers 4.31 CLIPTextModel
(OpenCLIP-H text tower as SD 2.x ships it, 23 layers), built from the configs with their own
random init (the C bench makes its own random weights: only times are compared). float32,
eval(), torch.no_grad(), batch 1, the same shapes as the C bench; best of N after a warm-up.
The attention runs as diffusers 0.17 runs it on torch 1.x (AttnProcessor: baddbmm, softmax,
bmm, the whole N x N score matrix), unpatched.

OPENBLAS_CORETYPE is set to SkylakeX by default before torch loads OpenBLAS: torch's
matrix products go to the system libblas (OpenBLAS 0.3.21 openmp), whose AVX-512 kernels
are the fastest on this CPU (docs/benchmarks.md); --openblas-coretype "" keeps the
environment's value.

--malloc no-mmap (the default) re-runs the script with GLIBC_TUNABLES set so that glibc's
malloc never returns big blocks to the kernel (mmap_max=0, no trimming). PyTorch's CPU
allocator is plain malloc: by default every tensor above glibc's mmap threshold (128 KB,
rising to at most 32 MB) is a fresh mmap whose pages fault in on first touch, and on this
VM that makes torch several times slower at the large sizes (VAE encoder at 512: 17.6 s
default vs 3.5 s in one profile, silu, group_norm, add, div each ~90 ms of page faults). The C forwards reuse one scratch arena, so this is the setting that
compares computation with computation; --malloc default times torch as it comes.
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

# The same configs as tests/bench_models.c.
UNET_CONFIG = dict(
    sample_size=96, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True, upcast_attention=True, only_cross_attention=False, dual_cross_attention=False)
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=768, scaling_factor=0.18215)
CLIP_CONFIG = dict(
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=512)

# (key for --only, name in the JSON, kind, size, timed runs after one warm-up, part of --quick)
CASES = [
    ("text", "text_encoder 1x77", "text", 77, 5, True),
    ("vae256", "vae_encoder 256x256", "vae", 256, 3, True),
    ("unet32", "unet 32x32", "unet", 32, 3, True),
    ("vae512", "vae_encoder 512x512", "vae", 512, 2, False),
    ("unet64", "unet 64x64", "unet", 64, 2, False),
    ("extract", "extract 256x256", "extract", 256, 2, False),
]






def setup_imports():
    """diffusers/transformers from the source trees under /work/ref, with the stand-ins the golden
    generator needs on Debian's torch (a pure-python safetensors module, package metadata)."""
    sys.path.insert(0, HERE)
    import golden_common as gc
    for sub in ("diffusers/src", "transformers/src", "hfhub/src", "ftfy"):
        p = os.path.join(gc.REF, sub)
        if os.path.isdir(p) and p not in sys.path:
            sys.path.append(p)
    gc._install_fake_metadata()
    gc._install_safetensors_standin()
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE"):
        os.environ.setdefault(k, "1")


class Models:
    """Each model built once, on first use."""

    def __init__(self):
        self._unet = self._vae = self._text = None
        self.build_seconds = {}

    def _build(self, name, fn):
        t0 = time.perf_counter()
        m = fn().float().eval()
        self.build_seconds[name] = time.perf_counter() - t0
        print("  built %s in %.1f s (%.0f M parameters)" % (name, self.build_seconds[name],
                                                          sum(p.numel() for p in m.parameters()) / 1e6), flush=True)
        return m

    def unet(self):
        if self._unet is None:
            from diffusers import UNet2DConditionModel
            self._unet = self._build("unet", lambda: UNet2DConditionModel(**UNET_CONFIG))
        return self._unet

    def vae(self):
        if self._vae is None:
            from diffusers import AutoencoderKL
            self._vae = self._build("vae", lambda: AutoencoderKL(**VAE_CONFIG))
        return self._vae

    def text(self):
        if self._text is None:
            from transformers import CLIPTextConfig, CLIPTextModel
            self._text = self._build("text_encoder", lambda: CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG)))
        return self._text


def token_ids(torch):
    # BOS, a few words, EOS, then "!" (id 0) as SD 2.x pads: the C bench's ids.
    ids = [49406] + [320 + 97 * i for i in range(1, 6)] + [49407] + [0] * 70
    return torch.tensor([ids], dtype=torch.long)


def make_case(torch, models, kind, size):
    """Returns fn() running one forward (or one extraction) and the output to check."""
    g = torch.Generator().manual_seed(1)
    if kind == "text":
        text, ids = models.text(), token_ids(torch)
        return lambda: text(ids)[0]
    if kind == "vae":
        vae = models.vae()
        img = torch.rand(1, 3, size, size, generator=g) * 2 - 1
        return lambda: vae.encode(img).latent_dist.mean
    if kind == "unet":
        unet = models.unet()
        x = torch.rand(1, 4, size, size, generator=g) * 2 - 1
        ctx = (torch.rand(1, 77, 1024, generator=g) * 2 - 1) * 1.7
        t = torch.tensor([21.0])
        return lambda: unet(x, t, encoder_hidden_states=ctx).sample
    if kind == "extract":
        return make_extract(torch, models, size, g)
    raise ValueError(kind)


def make_extract(torch, models, size, g):
    """SatDiFuser's extraction of one image: VAE posterior mean * 0.18215, the prompt embedding,
    then the DDIM inversion walk of LDMExtractor.generalized_steps: 10 UNet calls at t = -1, 1,
    21, ..., 161 (50 steps, saves at 47, 45, 40), with forward hooks keeping the outputs of the
    up_blocks modules named *attn1 and *conv2 (what the feature extractor captures)."""
    unet, vae, text = models.unet(), models.vae(), models.text()
    img = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    ids = token_ids(torch)
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2
    alphas = torch.cumprod(1.0 - betas, dim=0)
    seq = [-1] + list(range(1, 1000, 20))[:10]   # t, t_next pairs: (-1, 1), (1, 21), ..., (161, 181)
    captured = {}

    def hook(name):
        def fn(module, inputs, output):
            captured[name] = output
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in unet.up_blocks.named_modules()
               if n.endswith("attn1") or n.endswith("conv2")]

    def alpha(t):
        return torch.tensor(1.0) if t < 0 else alphas[t]

    def run():
        z = vae.encode(img).latent_dist.mean * 0.18215
        emb = text(ids)[0]
        x = z
        for i in range(10):
            t, t_next = seq[i], seq[i + 1]
            captured.clear()
            eps = unet(x, torch.tensor([float(t)]), encoder_hidden_states=emb).sample
            a, a_next = alpha(t), alpha(t_next)
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return x

    run.handles = handles
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="build/bench_models_pytorch.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=None, help="prefix of text, vae256, vae512, unet32, unet64, extract")
    ap.add_argument("--reps", type=int, default=0, help="timed runs per case (default: as the C bench)")
    ap.add_argument("--openblas-coretype", default="SkylakeX",
                    help="OPENBLAS_CORETYPE for torch's BLAS (default SkylakeX; '' keeps the environment's)")
    ap.add_argument("--malloc", choices=("no-mmap", "default"), default="no-mmap",
                    help="no-mmap: glibc malloc keeps freed memory (no page faults on every big tensor)")
    args = ap.parse_args()
    apply_bench_env(args)
    load_start = load_average()
    try:
        import torch
    except ImportError:
        print("bench_models_pytorch: torch is not importable (use /usr/bin/python3 with python3-torch)")
        return 1
    setup_imports()
    import diffusers
    import transformers
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = torch.__config__.show()
    print(config)
    env = {k: os.environ.get(k, "") for k in ("OPENBLAS_CORETYPE", "GLIBC_TUNABLES", "OMP_PROC_BIND", "OMP_PLACES")}
    print("torch %s, diffusers %s, transformers %s, %d threads, libblas: %s, load average %.2f"
          % (torch.__version__, diffusers.__version__, transformers.__version__, torch.get_num_threads(),
             blas_name(), load_start))
    print("environment: " + ", ".join("%s=%s" % (k, v or "(unset)") for k, v in env.items()), flush=True)

    models = Models()
    ops, means, runs, finite, when = {}, {}, {}, {}, {}
    with torch.no_grad():
        for key, name, kind, size, reps, quick in CASES:
            if args.quick and not quick:
                continue
            if args.only and not key.startswith(args.only):
                continue
            n = args.reps if args.reps > 0 else reps
            print("%s: warm-up + %d runs" % (name, n), flush=True)
            fn = make_case(torch, models, kind, size)
            out = fn()
            times = []
            for k in range(n):
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
                print("    run %d: %.3f s" % (k + 1, times[-1]), flush=True)
            for h in getattr(fn, "handles", []):
                h.remove()
            ops[name], means[name], runs[name] = min(times), sum(times) / n, times
            when[name] = time.strftime("%Y-%m-%d %H:%M:%S")
            finite[name] = bool(torch.isfinite(out).all())
            print("%-22s best %.3f s  mean %.3f s%s" % (name, ops[name], means[name],
                                                        "" if finite[name] else "  (non-finite output)"), flush=True)
    load_end = load_average()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("peak RSS of this process (all models built): %.0f MiB; load average at start %.2f, at end %.2f"
          % (rss_mib, load_start, load_end))
    result = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas_name(),
        "openblas_coretype": env["OPENBLAS_CORETYPE"],
        "malloc": args.malloc,
        "environment": env,
        "config": config,
        "load_average": [load_start, load_end],
        "build_seconds": models.build_seconds,
        "peak_rss_mib": rss_mib,
        "ops": ops,
        "mean": means,
        "runs": runs,
        "finite": finite,
        "measured_at": when,
    }
    # Keep the cases of an earlier run that this one did not time (--only, --quick); "measured_at"
    # says which run each comes from.
    if os.path.exists(args.out):
        try:
            with open(args.out) as f:
                old = json.load(f)
            for field in ("ops", "mean", "runs", "finite", "measured_at"):
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
