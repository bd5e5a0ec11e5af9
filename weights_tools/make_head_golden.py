#!/usr/bin/env python3
"""Golden cases for module "head" (fusers + task heads), made by running the
ORIGINAL SatDiFuser modules (yurujaja/SatDiFuser @ 51148cb: archs/aggregation_networks.py,
classifiers.py, segmenters.py, detectron2/resnet.py, imported unchanged from a
checkout outside the project) in eval mode on small random feature pyramids.

Usage:  /usr/bin/python3 weights_tools/make_head_golden.py [--out golden] [--only NAME]
Needs:  Debian python3-torch 1.13.1; the original code at $SATDIFUSER_REF/SatDiFuser
        (default /work/ref/SatDiFuser). fvcore is not needed: its weight_init is
        replaced by a two-function stand-in written to a temporary folder (the
        init values are overwritten anyway).

Same format and conventions as the reference head cases (../shared/golden/head_*):
weights.safetensors = model.state_dict(); input.feat.<i>.<s> = batch_feats[save_timesteps[i]][s];
captures named in each case's notes; atol = 20 x the largest |fp32 - fp64| over
the compared tensors (the same original code in float64 on the same float32
weights and inputs), rounded up to 1/2/5e-k, floor 1e-5; rtol 1e-4.
"""
import argparse
import math
import os
import re
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden_common import save_safetensors  # noqa: E402  (our own safetensors writer)

REF = os.environ.get("SATDIFUSER_REF", "/work/ref")

FVCORE_SHIM = '''import torch.nn as nn
def c2_msra_fill(module):
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)
def c2_xavier_fill(module):
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)
'''


def setup_env():
    d = tempfile.mkdtemp(prefix="fvcore_shim_")
    os.makedirs(os.path.join(d, "fvcore", "nn"))
    for f, text in (("fvcore/__init__.py", ""), ("fvcore/nn/__init__.py", ""), ("fvcore/nn/weight_init.py", FVCORE_SHIM)):
        with open(os.path.join(d, f), "w") as fh:
            fh.write(text)
    sys.path.insert(0, d)
    sys.path.insert(0, os.path.join(REF, "SatDiFuser"))
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    # SyncBatchNorm rejects CPU input in torch 1.13; on one device the original falls back to
    # F.batch_norm, i.e. BatchNorm2d with the same eps, momentum, parameters, buffers and names.
    torch.nn.SyncBatchNorm = torch.nn.BatchNorm2d


def git_blobs():
    """Git blob ids of the original files (sha1 of 'blob <size>\\0' + content), to pin them."""
    import hashlib
    out = {}
    for f in ("archs/aggregation_networks.py", "archs/classifiers.py", "archs/segmenters.py",
              "archs/detectron2/resnet.py"):
        data = open(os.path.join(REF, "SatDiFuser", f), "rb").read()
        out[f] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()[:12]
    return out


def tolerance(err):
    """20 x err rounded up to 1, 2 or 5 x 10^k, at least 1e-5."""
    a = max(20.0 * err, 1e-5)
    e = math.floor(math.log10(a))
    for m in (1, 2, 5, 10):
        if m * 10 ** e >= a * (1 - 1e-12):
            return float(f"{m}e{e}") if m < 10 else float(f"1e{e + 1}")
    return a


# ------------------------------------------------------------------ the model

CLASSES = {
    ("classification", "gw"): "GWFuserClassifier", ("classification", "lw"): "LWFuserClassifier",
    ("classification", "moe"): "MoEFuserClassifier", ("segmentation", "gw"): "GWFuserSegUPerNet",
    ("segmentation", "lw"): "LWFuserSegUPerNet", ("segmentation", "moe"): "MoEFuserSegUPerNet",
}
FUSER_KEYS = {"gw": [], "lw": ["gating_tempature"], "moe": ["num_experts", "top_k", "warmup_steps", "gating_tempature"]}
SEG_KEYS = ["channels", "pool_scales", "rescales", "align_corners"]


def build(cfg):
    """The original class, built as the reference cases were: for classifiers the
    fusers' default projection_dim is set to config.projection_dim (the released
    LinearClassifierDecoderMixin does not pass it on)."""
    from archs import aggregation_networks as agg
    from archs import classifiers, segmenters
    task = "segmentation" if cfg["task"] == "segmentation" else "classification"
    cls_name = CLASSES[(task, cfg["fuser"])]
    cls = getattr(classifiers if task == "classification" else segmenters, cls_name)
    fd = {int(k): v for k, v in cfg["feature_dims"].items()}
    kw = dict(feature_dims=fd, projection_dim=cfg["projection_dim"], num_norm_groups=cfg["num_norm_groups"],
              num_res_blocks=cfg["num_res_blocks"], save_timesteps=cfg["save_timesteps"], num_classes=cfg["num_classes"])
    for k in FUSER_KEYS[cfg["fuser"]]:
        if k in cfg:
            kw[k] = cfg[k]
    if task == "segmentation":
        for k in SEG_KEYS:
            if k in cfg:
                kw[k] = tuple(cfg[k]) if isinstance(cfg[k], list) else cfg[k]
    fusers = (agg.GlobalWeightedFuser, agg.LocalWeightedFuser, agg.MoEWeightedFuser)
    saved = [f.__init__.__defaults__ for f in fusers]
    try:
        if task == "classification":
            for f in fusers:
                d = list(f.__init__.__defaults__)
                d[0] = cfg["projection_dim"]  # projection_dim is the first defaulted argument
                f.__init__.__defaults__ = tuple(d)
        model = cls(**kw)
    finally:
        for f, d in zip(fusers, saved):
            f.__init__.__defaults__ = d
    return model


def perturb(model, seed, gate_scale=3.0):
    """Parameters away from their init (as the reference cases): conv/linear weight += N(0,0.05),
    conv/linear bias = N(0,0.1) pushed to |b| >= 0.03, GN/BN weight = 1+N(0,0.1), bias N(0,0.1),
    BN running_mean N(0,0.2), running_var U(0.5,1.5), GW mixing_weights 1+N(0,0.5), MoE temperature
    of scale s 0.65+0.15 s, MoE gate conv weights x 3 (gate_scale) after the perturbation."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mname, m in model.named_modules():
            for pname, p in m.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=g)
                if isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d)):
                    p.copy_(1.0 + 0.1 * noise if pname == "weight" else 0.1 * noise)
                elif pname == "mixing_weights":
                    p.copy_(1.0 + 0.5 * noise)
                elif pname == "temperature":
                    s = int(mname.split(".")[1])
                    p.fill_(0.65 + 0.15 * s)
                elif pname == "bias":
                    b = 0.1 * noise
                    b = torch.where(b.abs() < 0.03, torch.sign(b + 1e-12) * 0.03, b)
                    p.copy_(b)
                else:
                    p.add_(0.05 * noise)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
        for mname, m in model.named_modules():
            if mname.endswith("gate_network"):
                m[0].weight.mul_(gate_scale)


def make_inputs(cfg, batch, seed):
    """feats[t] = list of scales (largest width first): N(0,1) + per-(sample, channel) offset N(0,0.25)."""
    import torch
    g = torch.Generator().manual_seed(seed + 1)
    widths = sorted((int(k) for k in cfg["feature_dims"]), reverse=True)
    feats = {}
    for t in cfg["save_timesteps"]:
        scales = []
        for w in widths:
            c = sum(cfg["feature_dims"][str(w)])
            x = torch.randn(batch, c, w, w, generator=g) + 0.25 * torch.randn(batch, c, 1, 1, generator=g)
            scales.append(x)
        feats[t] = scales
    return feats


def run(model, cfg, feats, start_step):
    """Eval forward with hooks. Returns (tensors dict name -> tensor, moe_log)."""
    import torch
    task = cfg["task"]
    fuser = cfg["fuser"]
    ts_desc = sorted(cfg["save_timesteps"], reverse=True)
    mods = dict(model.named_modules())
    out, handles, moe_log = {}, [], []
    calls = {}

    def reset_counters():
        for name, m in mods.items():
            if hasattr(m, "global_step"):
                m.global_step.fill_(start_step)

    def add_hook(path, fn):
        handles.append(mods[path].register_forward_hook(fn))

    if fuser in ("gw", "lw"):
        # kept small: the first stream of each scale at the first timestep, the last one at the last
        widths = sorted((int(w) for w in cfg["feature_dims"]), reverse=True)
        firsts, lasts, n = set(), set(), 0
        for w in widths:
            firsts.add(n)
            n += len(cfg["feature_dims"][str(w)])
            lasts.add(n - 1)
        for i in range(len(model.bottleneck_layers)):
            def hook(m, inp, o, i=i):
                k = calls.get(("bl", i), 0)
                calls[("bl", i)] = k + 1
                if (i in firsts and k == 0) or (i in lasts and k == len(ts_desc) - 1):
                    out[f"capture.bottleneck_layers.{i}@t{ts_desc[k]}"] = o.detach().clone()
            add_hook(f"bottleneck_layers.{i}", hook)
    if fuser == "moe":
        for s in range(len(model.scale_moes)):
            sm = model.scale_moes[s]

            def hook(m, inp, o, s=s, sm=sm):
                k = calls.get(("gate", s), 0)
                calls[("gate", s)] = k + 1
                t = ts_desc[k]
                z = o / sm.temperature
                step = int(sm.global_step) + 1  # the forward increments right after the gate
                active = not (step < sm.warmup_steps)
                out[f"capture.scale_moes.{s}.gate_network@t{t}"] = o.detach().clone()
                out[f"capture.moe.gate_probs.{s}@t{t}"] = torch.softmax(z, dim=1).detach().clone()
                out[f"capture.moe.topk_active.{s}@t{t}"] = torch.tensor(int(active), dtype=torch.int64)
                entry = {"scale": s, "t": t, "step": step, "active": active}
                if active:
                    v, idx = torch.topk(z, k=sm.top_k, dim=1)
                    out[f"capture.moe.topk_indices.{s}@t{t}"] = idx.clone()
                    zs = torch.sort(z, dim=1, descending=True).values
                    entry["idx"] = idx.tolist()
                    entry["margin"] = float((zs[:, sm.top_k - 1] - zs[:, sm.top_k]).min()) if sm.top_k < zs.shape[1] else float("inf")
                moe_log.append(entry)
            add_hook(f"scale_moes.{s}.gate_network", hook)
    if task == "segmentation":
        n_scales = len(cfg["feature_dims"])
        paths = [f"psp_modules.{j}" for j in range(len(model.psp_modules))] + ["bottleneck", "fpn_bottleneck", "conv_seg"]
        paths += [f"lateral_convs.{i}" for i in range(n_scales - 1)] + [f"fpn_convs.{i}" for i in range(n_scales - 1)]
    else:
        paths = ["decoder_head.1"]
    for p in paths:
        def hook(m, inp, o, p=p):
            out[f"capture.{p}"] = o.detach().clone()
        add_hook(p, hook)

    reset_counters()
    with torch.no_grad():
        if task == "segmentation":
            logits, misc = model(feats, output_shape=tuple(cfg["output_shape"]))
        else:
            logits, misc = model(feats)
    out["output.logits"] = logits.detach().clone()
    counters_after = [int(m.global_step) for m in getattr(model, "scale_moes", [])]
    for h in handles:
        h.remove()
    # the fuser's own forward again (counters reset): what the head receives, plus the gates
    from archs import aggregation_networks as agg
    base = {"gw": agg.GlobalWeightedFuser, "lw": agg.LocalWeightedFuser, "moe": agg.MoEWeightedFuser}[fuser]
    reset_counters()
    with torch.no_grad():
        fused, misc = base.forward(model, feats)
    for s, f in enumerate(fused):
        out[f"capture.fused.{s}"] = f.detach().clone()
    if fuser == "gw":
        out["capture.mixing_weights_softmax"] = misc.detach().clone()
    if fuser == "lw":
        for s, gw in enumerate(misc):
            out[f"capture.gate.{s}"] = gw.detach().clone()
    return out, moe_log, counters_after


# ------------------------------------------------------------------ the cases

# projection_dim 32 (not 64 as the reference cases) keeps each case to a few hundred KB
COMMON = {"save_timesteps": [47, 45, 40], "projection_dim": 32, "num_norm_groups": 2, "num_res_blocks": 1}
SEG = {"output_shape": [30, 30], "channels": 16, "pool_scales": [1, 2, 3, 6], "rescales": [1, 1, 1, 1],
       "align_corners": False}
FD_SEG = {"12": [2] * 6, "6": [4] * 6, "3": [8] * 6, "2": [8] * 3}
FD_CLS = {"8": [4] * 6, "4": [8] * 6, "2": [16] * 6, "1": [16] * 3}
FD_MOE = {"8": [1] * 6, "4": [2] * 6, "2": [4] * 6, "1": [4] * 3}

CASES = [
    dict(name="head_gw_seg", seed=9101, batch=2,
         config=dict(task="segmentation", fuser="gw", feature_dims=FD_SEG, num_classes=4, **COMMON, **SEG),
         what="GlobalWeightedFuser + UPerNet (channels 16), eval; widths 12, 6, 3, 2 (resizes by non-integer factors)"),
    dict(name="head_lw_cls", seed=9102, batch=3,
         config=dict(task="classification", fuser="lw",
                     feature_dims={"12": [3, 1, 2, 2], "6": [4, 6, 2], "3": [8, 4], "2": [5, 3]},
                     **dict(COMMON, save_timesteps=[40, 47, 45], num_res_blocks=2), num_classes=7,
                     gating_tempature=1.3),
         what="LocalWeightedFuser (gating_tempature 1.3) + linear classifier, eval; UNEQUAL stream widths (so the "
              "released start_channel quirk reads channels [0, c_l) of each scale: overlapping, and the last "
              "channels are never read), widths 12, 6, 3, 2 (resizes by non-integer factors), num_res_blocks 2 (second BottleneckBlock with identity shortcut), "
              "save_timesteps given unsorted [40, 47, 45]: input.feat.<i> follows that order (feat.0 is t40) while "
              "the fusers walk 47, 45, 40"),
    dict(name="head_moe_cls_dense", seed=9103, batch=3,
         config=dict(task="classification", fuser="moe", feature_dims=FD_MOE, num_classes=10, **COMMON,
                     num_experts=8, top_k=2, warmup_steps=300, gating_tempature=1.0, moe_global_step=0),
         what="MoEWeightedFuser + linear classifier, eval, counter 0 < warmup_steps 300 -> every call dense "
              "(softmax over all 8 experts)"),
    dict(name="head_moe_cls_cross", seed=9104, batch=4, topk=True,
         config=dict(task="classification", fuser="moe", feature_dims=FD_MOE, num_classes=5, **COMMON,
                     num_experts=6, top_k=3, warmup_steps=300, gating_tempature=1.0, moe_global_step=298),
         what="MoEWeightedFuser (6 experts, top_k 3) + linear classifier, eval, counter 298 with warmup 300: the "
              "first call of each scale (t47) sees 299 -> dense, the next two (t45, t40) see 300 and 301 -> top-3: "
              "the warmup boundary falls inside one forward"),
    dict(name="head_moe_seg_topk", seed=9105, batch=3, topk=True,
         config=dict(task="segmentation", fuser="moe", feature_dims={"12": [1] * 6, "6": [2] * 6, "3": [4] * 6, "2": [4] * 3},
                     num_classes=3, **COMMON, **SEG, num_experts=4, top_k=2, warmup_steps=500,
                     gating_tempature=1.0, moe_global_step=500),
         what="MoEWeightedFuser (4 experts) + UPerNet (channels 16), eval, counter 500 = warmup_steps -> every "
              "call top-2; batch items pick different expert pairs"),
    dict(name="head_gw_multilabel_t2", seed=9106, batch=2,
         config=dict(task="multi_label_classification", fuser="gw", feature_dims={"6": [4, 4, 4], "3": [8, 8],
                     "2": [8]}, save_timesteps=[1, 100], projection_dim=32, num_norm_groups=4, num_res_blocks=1,
                     num_classes=6),
         what="GlobalWeightedFuser + linear head (multi-label: the same module, BCE at training), eval; 2 timesteps "
              "[1, 100] (input order ascending, fusers walk 100 then 1), 3 scales of widths 6, 3, 2 (bilinear "
              "resizes by non-integer factors)"),
]


def to_dtype(feats, dtype):
    return {t: [x.to(dtype) for x in v] for t, v in feats.items()}


def describe_moe(log):
    parts = []
    for e in log:
        if e["active"]:
            parts.append(f"s{e['scale']} t{e['t']}: counter {e['step']} -> top-{len(e['idx'][0])} {e['idx']} "
                         f"(margin {e['margin']:.3g})")
        else:
            parts.append(f"s{e['scale']} t{e['t']}: counter {e['step']} -> dense")
    return "; ".join(parts)


def make_case(spec, out_dir, blobs, mutation=True):
    import torch
    cfg = dict(spec["config"])
    seed = spec["seed"]
    for attempt in range(200):
        torch.manual_seed(seed)
        model = build(cfg)
        perturb(model, seed)
        model.eval()
        feats = make_inputs(cfg, spec["batch"], seed)
        tensors, log, counters = run(model, cfg, feats, cfg.get("moe_global_step", 0))
        if not spec.get("topk"):
            break
        active = [e for e in log if e["active"]]
        ok = all(e["margin"] >= 0.01 for e in active)
        ok = ok and all(len({tuple(sorted(r)) for r in e["idx"]}) > 1 for e in active)
        if ok:
            break
        print(f"  {spec['name']}: seed {seed} rejected (top-k margin or identical expert sets)", flush=True)
        seed += 1
    else:
        raise RuntimeError(f"{spec['name']}: no seed found")
    # the same original code in float64 on the same float32 weights and inputs
    m64 = build(cfg)
    m64.load_state_dict(model.state_dict())
    m64 = m64.double().eval()
    # the original casts the features with .float() and builds the MoE output with torch.zeros: for the
    # float64 run, .float() keeps the dtype and the default dtype is float64
    orig_float = torch.Tensor.float
    torch.Tensor.float = lambda self, *a, **k: self
    torch.set_default_dtype(torch.float64)
    try:
        t64, log64, _ = run(m64, cfg, to_dtype(feats, torch.float64), cfg.get("moe_global_step", 0))
    finally:
        torch.Tensor.float = orig_float
        torch.set_default_dtype(torch.float32)
    worst, worst_name, worst_max = 0.0, "", 0.0
    for k, v in tensors.items():
        if not v.dtype.is_floating_point:
            if not torch.equal(v, t64[k]):
                raise RuntimeError(f"{spec['name']}: {k} differs in float64 (expert choice flips)")
            continue
        e = float((v.double() - t64[k]).abs().max())
        if e > worst:
            worst, worst_name, worst_max = e, k, float(t64[k].abs().max())
    atol, rtol = tolerance(worst), 1e-4
    # mutation test: every float state_dict tensor must move output.logits out of tolerance
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    quiet = []
    if mutation:
        want = tensors["output.logits"].double()
        for k, v in sd.items():
            if not v.dtype.is_floating_point:
                continue
            mut = v.clone()
            last = k.rsplit(".", 1)[-1]
            is_conv_w = last == "weight" and v.dim() >= 2
            if is_conv_w:
                mut[0] = -mut[0]
            elif last in ("running_var", "temperature", "mixing_weights") or (last == "weight" and v.dim() == 1):
                mut.fill_(1.0)
            else:
                mut.zero_()
            model.load_state_dict({**sd, k: mut})
            with torch.no_grad():
                got, _, _ = run(model, cfg, feats, cfg.get("moe_global_step", 0))
            d = (got["output.logits"].double() - want).abs()
            if bool((d <= atol + rtol * want.abs()).all()):
                quiet.append(k)
        model.load_state_dict(sd)
    n_float = sum(1 for v in sd.values() if v.dtype.is_floating_point)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    for i, t in enumerate(cfg["save_timesteps"]):
        for s, x in enumerate(feats[t]):
            tensors[f"input.feat.{i}.{s}"] = x.contiguous()
    moe_text = ""
    if cfg["fuser"] == "moe":
        moe_text = (f" MoE: config.moe_global_step={cfg['moe_global_step']} is each MOEWeightedPerScale.global_step "
                    f"before the forward; every call (one per scale per timestep, timesteps descending) first does "
                    f"global_step += 1, then uses top-k iff NOT (global_step < warmup_steps={cfg['warmup_steps']}). "
                    f"Per call: {describe_moe(log)}. Counters after the forward: {counters}. "
                    "capture.scale_moes.<s>.gate_network@t<T> = pooled gate logits BEFORE /temperature; "
                    "capture.moe.gate_probs = softmax(logits/temperature); capture.moe.topk_active (int64 0/1) for "
                    "every call; capture.moe.topk_indices (int64, descending score) only for top-k calls. MoE gate "
                    "conv weights multiplied by 3 after the perturbation (gate logit std ~1).")
        if spec.get("topk"):
            moe_text += (" Seed searched until every top-k call has a k-th vs (k+1)-th tempered logit gap >= 0.01 "
                         "and the batch items of a call do not all pick the same expert set.")
    quirk = ""
    if cfg["task"] != "segmentation":
        quirk = (" QUIRK (classifiers): LinearClassifierDecoderMixin does not pass projection_dim to the fuser; as in "
                 "the reference cases the fusers' default projection_dim was set to config.projection_dim during "
                 "construction (function __defaults__, no source change).")
    if cfg["fuser"] == "lw":
        quirk += (" QUIRK (LocalWeightedFuser.forward): start_channel is never advanced, so stream l of a scale reads "
                  "channels [0, c_l) of that scale's concatenation; reproduced as it is.")
    caps = sorted({re.sub(r"\.\d+", ".<n>", k.split("@")[0]) + ("@t<T>" if "@" in k else "")
                   for k in tensors if k.startswith("capture.")})
    notes = (f"{spec['what']}. Original code: yurujaja/SatDiFuser @ 51148cb, archs/aggregation_networks.py, "
             f"classifiers.py, segmenters.py, detectron2/resnet.py imported unchanged (git blobs {blobs}); "
             f"fvcore.nn.weight_init replaced by a 2-function shim. torch {torch.__version__} (Debian "
             f"python3-torch), CPU, 1 thread. nn.SyncBatchNorm swapped for nn.BatchNorm2d (same eps, momentum, "
             f"parameters, buffers, names). Parameters: {' '.join(perturb.__doc__.split(':', 1)[1].split())} "
             f"weights.safetensors = model.state_dict() (BN num_batches_tracked int64 included; the MoE counter "
             f"is non-persistent, not in it). Inputs: input.feat.<i>.<s> = batch_feats[save_timesteps[i]][s], "
             f"N(0,1) + per-(sample,channel) offset N(0,0.25). Made by weights_tools/make_head_golden.py, seed "
             f"{seed}, batch {spec['batch']}, model.eval(), torch.no_grad().{quirk}{moe_text} Captures: "
             f"{', '.join(caps)}; capture.fused.<s> from a second call of the fuser's own forward (MoE counters reset "
             f"to the same start value); capture.bottleneck_layers.<i>@t<T> = Phi output of stream i at timestep T (first stream of each scale at the first timestep, last stream at the last); "
             f"capture.gate.<s> = LocalWeightedPerScale gating weights (B,K,H,W), K = ts_idx*L_s + stream; UPerNet "
             f"module outputs (psp_modules before the upsampling, lateral_convs before the top-down add, conv_seg "
             f"before the final resize); capture.decoder_head.1 = pooled features (B,P). Tolerance: rtol {rtol:g}; "
             f"atol = 20 x the largest |fp32 - fp64| over all compared tensors, rounded up to 1/2/5e-k, floor 1e-05 "
             f"-> atol {atol:g}. Largest fp32-vs-fp64 error: {worst:.3g} at {worst_name} (max|want| there "
             f"{worst_max:.3g}).")
    if mutation:
        notes += (f" Mutation test: resetting each of the {n_float} float state_dict tensors in turn (norm scales, "
                  f"running_var, temperature, mixing_weights -> 1; biases, running_mean -> 0; conv/linear weights: "
                  f"output channel 0 negated): {len(quiet)} leave output.logits within tolerance"
                  + (f" ({', '.join(quiet[:12])}{', ...' if len(quiet) > 12 else ''})." if quiet else "."))
    d = os.path.join(out_dir, spec["name"])
    os.makedirs(d, exist_ok=True)
    import json
    case = {"module": "head", "config": cfg, "rtol": rtol, "atol": atol, "notes": notes}
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
        f.write("\n")
    save_safetensors(weights, os.path.join(d, "weights.safetensors"))
    save_safetensors(tensors, os.path.join(d, "tensors.safetensors"))
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"  wrote {d} ({size / 1024:.0f} KiB, atol {atol:g}, worst {worst:.3g} at {worst_name}, "
          f"{len(quiet)}/{n_float} quiet mutations)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "golden"))
    ap.add_argument("--only", default=None)
    ap.add_argument("--no-mutation", action="store_true")
    args = ap.parse_args()
    setup_env()
    blobs = git_blobs()
    for spec in CASES:
        if args.only and args.only not in spec["name"]:
            continue
        print(f"{spec['name']}:", flush=True)
        make_case(spec, args.out, blobs, mutation=not args.no_mutation)


if __name__ == "__main__":
    main()
