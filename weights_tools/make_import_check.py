#!/usr/bin/python3
"""tests/data/torch/import_check: does `satdifuser import-head` reproduce the authors' head?

The two run.py checkpoints of tests/data/torch (runpy_head_cls.pth: GW fuser + linear classifier,
runpy_head_seg.pth: MoE fuser + UPerNet, made by weights_tools/make_runpy_heads.py with the original
SatDiFuser code) are loaded with torch.load, the ORIGINAL head is rebuilt with the original
utils/tasks.py create_decoder from the checkpoint's own config (as make_runpy_heads.py built it:
num_norm_groups 2 and the fusers' projection_dim default 8, the values the file does not hold),
decoder_net is loaded strictly, eval mode, and run on feature files made by OUR binary:

    satdifuser extract --model tests/data/tiny_pipeline --input LIST --size 64 --bands 3,2,1 \
        --scale clip [--layers conv2]          (conv2 only for the seg head: its config's layer_idxs)

batch_feats[save_timesteps[i]][s] = feat.<i>.<s> of the images stacked on the batch axis (as
weights_tools/make_head_golden.py and the golden "head" cases). tests/test_head_import.c imports the
same checkpoints with head_import() and compares its logits with these.

Written (Usage: /usr/bin/python3 weights_tools/make_import_check.py [./satdifuser]):
  features_cls/<img>.safetensors, features_seg/<img>.safetensors   the binary's feature files
  expected_cls.safetensors   logits (B, 10) of the original in float32, logits_f64 (the same original
                             code in float64 on the same float32 weights and features, stored
                             rounded to float32)
  expected_seg.safetensors   the (B, 7, 256, 256) logits at rows x cols (index tensors `rows`, `cols`,
                             every 13th pixel and the last: the full maps are 3.7 MB):
                             dense.logits / dense.logits_f64: MoE counters as a freshly loaded model
                             has them (0: the non-persistent global_step buffers are not in the file),
                             so every call of this forward is dense (counter 1..3 < warmup_steps 500);
                             topk.logits / topk.logits_f64: counters set to 500 before the forward,
                             so every call is top-1 (501..503); topk.choice (scales, timesteps, B) =
                             the expert each call picked
  metadata: images (JSON list, batch order), atol/rtol per compared tensor, err_f32_f64 (max |f32 -
  f64| over the FULL logits), min top-1 margin.
Tolerance as the golden head cases: atol = 20 x max |f32 - f64| rounded up to 1/2/5e-k (floor 1e-5),
rtol 1e-4.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from golden_common import load_safetensors, save_safetensors  # noqa: E402

TD = os.path.join(ROOT, "tests", "data", "torch")
OUT = os.path.join(TD, "import_check")
IMAGES = ["s2_r0_c1", "s4_r2_c0"]  # demo chips (tests/data/demo/images/<name>.npy)
STRIDE = 13  # seg logits kept at every 13th row/col (coprime with the x32 upsampling) and the last


def extract(binary, layers, out_dir):
    """One `extract` per image, run from the repository root with relative paths (so the files'
    source/model metadata does not depend on the checkout's location)."""
    tmp = tempfile.mkdtemp(prefix="import_check_")
    try:
        for n in IMAGES:
            cmd = [binary, "extract", "--model", "tests/data/tiny_pipeline", "--input",
                   f"tests/data/demo/images/{n}.npy", "--size", "64", "--bands", "3,2,1", "--scale", "clip",
                   "--out", os.path.join(tmp, "f"), "--quiet", "--threads", "2"]
            if layers:
                cmd += ["--layers", layers]
            subprocess.run(cmd, check=True, cwd=ROOT)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.makedirs(out_dir)
        for n in IMAGES:
            shutil.copy(os.path.join(tmp, "f", n + ".safetensors"), os.path.join(out_dir, n + ".safetensors"))
    finally:
        shutil.rmtree(tmp)
    return " ".join(["extract"] + cmd[2:4] + ["--input", "tests/data/demo/images/<image>.npy"] + cmd[6:12] + cmd[14:])


def read_meta(path):
    import struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def batch_feats(feat_dir):
    """{save_timesteps[i]: [cat over images of feat.<i>.<s>, s = 0 (widest) ...]} and feature_dims."""
    import torch
    files = [os.path.join(feat_dir, n + ".safetensors") for n in IMAGES]
    meta = read_meta(files[0])
    steps = json.loads(meta["save_timesteps"])
    dims = {int(k): v for k, v in json.loads(meta["feature_dims"]).items()}  # widths largest first
    ts = [load_safetensors(f) for f in files]
    feats = {}
    for i, t in enumerate(steps):
        feats[t] = [torch.cat([x[f"feat.{i}.{s}"] for x in ts], 0).float() for s in range(len(dims))]
    return feats, dims, steps


def build_original(ckpt, dims, dtype):
    """The original create_decoder on the checkpoint's config, defaults patched as make_runpy_heads.py
    built the head; decoder_net loaded strictly; eval."""
    import torch
    from archs import aggregation_networks as agg, classifiers, segmenters
    from utils.tasks import create_decoder
    from make_runpy_heads import NUM_NORM_GROUPS, PROJECTION_DIM, _patch_defaults
    funcs = [c.__init__ for c in (agg.GlobalWeightedFuser, agg.LocalWeightedFuser, agg.MoEWeightedFuser,
                                  classifiers.GWFuserClassifier, classifiers.MoEFuserClassifier,
                                  segmenters.GWFuserSegUPerNet, segmenters.MoEFuserSegUPerNet,
                                  segmenters.SegUPerNetDecoderMixin)]
    saved = [_patch_defaults(f, num_norm_groups=NUM_NORM_GROUPS) for f in funcs]
    saved_pd = [_patch_defaults(f, projection_dim=PROJECTION_DIM) for f in funcs[:3]]
    try:
        decoder = create_decoder(ckpt["config"], dict(dims))
    finally:
        for f, d in zip(funcs, saved):
            f.__defaults__ = d
        for f, d in zip(funcs[:3], saved_pd):
            f.__defaults__ = d
    decoder.load_state_dict(ckpt["decoder_net"], strict=True)
    if dtype == torch.float64:
        decoder = decoder.double()
    return decoder.eval()


def run(decoder, cfg, feats, counter, dtype):
    """One eval forward with every MoE counter set to `counter` first; returns (logits, choices, margins)."""
    import torch
    choices, margins, handles = {}, [], []
    for name, m in decoder.named_modules():
        if hasattr(m, "global_step"):
            m.global_step.fill_(counter)
    for s, sm in enumerate(getattr(decoder, "scale_moes", [])):
        def hook(m, inp, o, s=s, sm=sm):
            z = (o / sm.temperature).double()
            k = len(choices.get(s, []))
            choices.setdefault(s, []).append(torch.argmax(z, 1))
            zs = torch.sort(z, 1, descending=True).values
            margins.append(float((zs[:, 0] - zs[:, 1]).min()))
        handles.append(sm.gate_network.register_forward_hook(hook))
    f = {t: [x.to(dtype) for x in v] for t, v in feats.items()}
    orig_float = torch.Tensor.float
    if dtype == torch.float64:  # the original casts with .float() and makes the MoE sum with torch.zeros
        torch.Tensor.float = lambda self, *a, **k: self
        torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad():
            if cfg.task == "segmentation":
                logits, _ = decoder(f, output_shape=(cfg.original_img_size, cfg.original_img_size))
            else:
                logits, _ = decoder(f)
    finally:
        torch.Tensor.float = orig_float
        torch.set_default_dtype(torch.float32)
        for h in handles:
            h.remove()
    ch = torch.stack([torch.stack(choices[s]) for s in sorted(choices)]) if choices else None
    return logits, ch, margins


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "satdifuser"))
    from make_head_golden import setup_env, tolerance
    setup_env()
    import torch
    os.makedirs(OUT, exist_ok=True)
    report = []
    for kind, layers in (("cls", None), ("seg", "conv2")):
        feat_dir = os.path.join(OUT, f"features_{kind}")
        cmd = extract(binary, layers, feat_dir)
        feats, dims, steps = batch_feats(feat_dir)
        ckpt = torch.load(os.path.join(TD, f"runpy_head_{kind}.pth"), map_location="cpu")
        cfg = ckpt["config"]
        assert list(cfg.save_timesteps) == steps, (cfg.save_timesteps, steps)
        note = json.load(open(os.path.join(TD, f"runpy_head_{kind}.note.json")))
        assert {int(k): v for k, v in note["not_in_config"]["feature_dims"].items()} == dims, "feature layout"
        m32 = build_original(ckpt, dims, torch.float32)
        m64 = build_original(ckpt, dims, torch.float64)
        tensors, meta = {}, {"images": json.dumps(IMAGES), "extract": cmd,
                             "checkpoint": f"tests/data/torch/runpy_head_{kind}.pth", "made_by": "weights_tools/make_import_check.py"}
        variants = [("", 0)] if kind == "cls" else [("dense.", 0), ("topk.", 500)]
        for prefix, counter in variants:
            l32, ch32, mg = run(m32, cfg, feats, counter, torch.float32)
            l64, ch64, _ = run(m64, cfg, feats, counter, torch.float64)
            if ch32 is not None:
                assert torch.equal(ch32, ch64), "float32 and float64 pick other experts"
            err = float((l32.double() - l64).abs().max())
            atol = tolerance(err)
            if kind == "seg":
                H = l32.shape[-1]
                idx = torch.tensor(sorted(set(range(0, H, STRIDE)) | {H - 1}))
                tensors["rows"] = idx.to(torch.int64)
                tensors["cols"] = idx.to(torch.int64)
                l32 = l32[:, :, idx][:, :, :, idx]
                l64 = l64[:, :, idx][:, :, :, idx]
            tensors[prefix + "logits"] = l32.contiguous()
            tensors[prefix + "logits_f64"] = l64.float().contiguous()  # rounded to float32 (half the bytes)
            meta[prefix + "atol"] = repr(atol)
            meta[prefix + "rtol"] = "0.0001"
            meta[prefix + "err_f32_f64"] = repr(err)
            line = f"{kind} {prefix or ''}counter {counter}: logits {tuple(l32.shape)}, max|f32-f64| {err:.3g} -> atol {atol:g}"
            if ch32 is not None:
                active = counter + 1 >= m32.scale_moes[0].warmup_steps
                if active:  # the expert each call picked (scales, timesteps in call order, B)
                    tensors[prefix + "choice"] = ch32.to(torch.int64).contiguous()
                meta[prefix + "moe"] = (f"every MoE counter {counter} before the forward; warmup_steps "
                                        f"{m32.scale_moes[0].warmup_steps}; calls {'top-' + str(m32.scale_moes[0].top_k) if active else 'dense'}")
                if active:
                    meta[prefix + "min_margin"] = repr(min(mg))
                    line += f", top-1 in every call (min margin {min(mg):.3g}), choices per scale: " + \
                            "; ".join(str(ch32[s].tolist()) for s in range(ch32.shape[0]))
                else:
                    line += ", every call dense"
            report.append(line)
            print(line, flush=True)
        save_safetensors(tensors, os.path.join(OUT, f"expected_{kind}.safetensors"), meta)
    print("sizes:", sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs), "bytes")


if __name__ == "__main__":
    main()
