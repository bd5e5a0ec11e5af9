#!/usr/bin/python3
"""runpy_head_cls.pth / runpy_head_seg.pth for tests/data/torch: exactly what SatDiFuser's run.py
saves for a trained head (save_model: epoch, global_step, config, decoder_net, optimizer_state_dict,
lr_scheduler), made with the original code (yurujaja/SatDiFuser @ 51148cb at
$SATDIFUSER_REF/SatDiFuser: run.py's save_model/parse_args, utils/utils.py load_config and
combine_configs, utils/tasks.py create_decoder and set_criterion, utils/lr_scheduler.py, archs/).
Called by weights_tools/make_torch_checkpoints.py (which writes and checks the expected values).
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_torch_checkpoints import OUT, REF  # noqa: E402


# ------------------------------------------------------------------ run.py heads (original SatDiFuser code)

# the tiny pipeline's UNet at --size 64 (latent 8): satdifuser extract's feature_dims with the
# default layers (attn1, conv2) and with --layers conv2 (the seg head's config selects only conv2)
HEADS = {
    "cls": dict(yaml="configs/eurosat_exp.yaml", args=["--fuser", "gw"], seed=1611, layer_idxs=None,
                feature_dims={8: [8] * 6, 4: [16] * 6, 2: [24] * 6, 1: [32] * 3}),
    "seg": dict(yaml="configs/chesa_exp.yaml", args=["--fuser", "moe", "--num_experts", "2", "--top_k", "1"], seed=1612,
                layer_idxs={"up_blocks": {"conv2": "all"}}, feature_dims={8: [8] * 3, 4: [16] * 3, 2: [24] * 3, 1: [32] * 3}),
}
PROJECTION_DIM, NUM_NORM_GROUPS, CHANNELS = 8, 2, 8


def _runpy_functions():
    """save_model and parse_args taken from the original run.py's source (its module imports
    diffusers, wandb and datasets, which are not needed here)."""
    import ast
    src = open(os.path.join(REF, "SatDiFuser", "run.py")).read()
    tree = ast.parse(src)
    keep = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("save_model", "parse_args")]
    mod = ast.Module(body=keep, type_ignores=[])
    import torch
    ns = {"torch": torch, "argparse": argparse}
    exec(compile(mod, "run.py", "exec"), ns)
    return ns["save_model"], ns["parse_args"]


def _patch_defaults(func, **values):
    """Returns the old __defaults__ after setting the named defaulted arguments."""
    import inspect
    params = [p for p in inspect.signature(func).parameters.values() if p.default is not inspect.Parameter.empty]
    old = func.__defaults__
    d = list(old)
    for i, p in enumerate(params):
        if p.name in values:
            d[i] = values[p.name]
    func.__defaults__ = tuple(d)
    return old


def build_runpy_head(kind):
    from make_head_golden import setup_env
    setup_env()  # fvcore shim, SatDiFuser on sys.path, SyncBatchNorm -> BatchNorm2d, 1 thread
    import torch
    import torch.optim.lr_scheduler as lrs
    if not hasattr(lrs, "LRScheduler"):
        lrs.LRScheduler = lrs._LRScheduler  # torch 2.0's public name of the same base class
    from archs import aggregation_networks as agg, classifiers, segmenters
    from utils.lr_scheduler import WarmupCosineDecayScheduler
    from utils.tasks import create_decoder, set_criterion
    from utils.utils import combine_configs, load_config
    save_model, parse_args = _runpy_functions()
    spec = HEADS[kind]
    cwd = os.getcwd()
    os.chdir(os.path.join(REF, "SatDiFuser"))  # load_config reads configs/_base_/... relative to it
    try:
        args = parse_args(["--config", spec["yaml"]] + spec["args"])
        cfg = load_config(args.config)
        cfg = combine_configs(args, cfg)
    finally:
        os.chdir(cwd)
    # as a user who shrank the head in configs/_base_/*.yaml would get it
    cfg.projection_dim = PROJECTION_DIM
    if spec["layer_idxs"] is not None:
        cfg.layer_idxs = spec["layer_idxs"]
    if "channels" in cfg:
        cfg.channels = CHANNELS
    cfg.pretrained_model_name_or_path = cfg.pretrained_model_name_or_path + f"/resolution{cfg.img_size}"  # run.py
    # run.py never passes num_norm_groups (class default 32 needs projection_dim >= 128): set the
    # classes' default to 4 here; classifiers also do not pass projection_dim to the fuser (quirk):
    # its default set to the config's, as the golden head cases do
    funcs = [c.__init__ for c in (agg.GlobalWeightedFuser, agg.LocalWeightedFuser, agg.MoEWeightedFuser,
                                  classifiers.GWFuserClassifier, classifiers.MoEFuserClassifier,
                                  segmenters.GWFuserSegUPerNet, segmenters.MoEFuserSegUPerNet,
                                  segmenters.SegUPerNetDecoderMixin)]
    saved = [_patch_defaults(f, num_norm_groups=NUM_NORM_GROUPS) for f in funcs]
    saved_pd = [_patch_defaults(f, projection_dim=PROJECTION_DIM) for f in funcs[:3]]
    try:
        torch.manual_seed(spec["seed"])
        decoder = create_decoder(cfg, dict(spec["feature_dims"]))
    finally:
        for f, d in zip(funcs, saved):
            f.__defaults__ = d
        for f, d in zip(funcs[:3], saved_pd):
            f.__defaults__ = d
    # run.py's optimizer, scheduler and loop (2 epochs of 2 steps on random features)
    optimizer = torch.optim.Adam([{"params": decoder.parameters(), "lr": cfg.lr}], lr=cfg.lr,
                                 weight_decay=cfg.op_weight_decay)
    lr_scheduler = WarmupCosineDecayScheduler(optimizer=optimizer, warmup_epochs=cfg.get("warmup_epochs"),
                                              max_lr=cfg.get("lr"), min_lr=cfg.get("min_lr"),
                                              total_epochs=cfg.get("max_train_epochs"))
    criterion = set_criterion(cfg.task, cfg.get("ignore_index", -100))
    g = torch.Generator().manual_seed(spec["seed"] + 1)
    global_step, batch = 0, 2
    for epoch in range(2):
        decoder.train()
        for _ in range(2):
            optimizer.zero_grad()
            global_step += 1
            feats = {t: [torch.randn(batch, sum(c), w, w, generator=g) for w, c in
                         sorted(spec["feature_dims"].items(), reverse=True)] for t in cfg.save_timesteps}
            if "seg" in cfg.task:
                labels = torch.randint(0, cfg.num_classes, (batch, cfg.original_img_size, cfg.original_img_size),
                                       generator=g)
            else:
                labels = torch.randint(0, cfg.num_classes, (batch,), generator=g)
            output_shape = (cfg.original_img_size, cfg.original_img_size) if "seg" in cfg.task else None
            logits, _ = decoder(feats, output_shape=output_shape)
            loss = criterion(logits, labels)
            loss.backward()
            optimizer.step()
        lr_scheduler.step()
    return cfg, decoder, optimizer, lr_scheduler, epoch + 1, global_step, save_model


def fx_runpy_head(kind, path):
    from omegaconf import OmegaConf
    cfg, decoder, optimizer, lr_scheduler, epoch, global_step, save_model = build_runpy_head(kind)
    save_model(cfg, decoder, optimizer, lr_scheduler, epoch, global_step, path)
    # the expected values from the objects in memory (the same dict save_model builds)
    obj = {"epoch": epoch, "global_step": global_step, "config": cfg, "decoder_net": decoder.state_dict(),
           "optimizer_state_dict": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict()}
    sd = decoder.state_dict()
    keys = ["task", "fuser", "num_classes", "projection_dim", "save_timesteps", "num_experts", "top_k", "channels",
            "layer_idxs", "num_timesteps", "diffusion_mode", "prompt", "num_metadata", "use_metadata",
            "pool_scales", "rescales", "original_img_size", "img_size", "dataset_name"]
    c = OmegaConf.to_container(cfg, resolve=True)
    note = {
        "file": os.path.basename(path),
        "made_by": "run.py save_model() (source taken from the original run.py) on the original create_decoder(cfg, "
                   "feature_dims) of yurujaja/SatDiFuser @ 51148cb; cfg from run.py's load_config + combine_configs("
                   f"parse_args({['--config', HEADS[kind]['yaml']] + HEADS[kind]['args']})), then projection_dim"
                   f" = {PROJECTION_DIM}" + (f", channels = {CHANNELS}" if "channels" in c else "") +
                   (f", layer_idxs = {HEADS[kind]['layer_idxs']}" if HEADS[kind]["layer_idxs"] else "") +
                   " and run.py's '/resolution{img_size}' suffix; Adam + WarmupCosineDecayScheduler, 2 epochs x 2 steps",
        "config_values": {k: c[k] for k in keys if k in c},
        "not_in_config": {
            "num_norm_groups": NUM_NORM_GROUPS,
            "why": "run.py never passes num_norm_groups: the real heads use the class default 32 (and so need "
                   "projection_dim // 4 divisible by 32); this fixture set the default to " + str(NUM_NORM_GROUPS) +
                   " to stay small, so an importer needs an option for it (default 32)",
            "num_res_blocks": 1, "feature_dims": {str(k): v for k, v in HEADS[kind]["feature_dims"].items()},
            "feature_dims_note": "not saved anywhere. " + (
                "GW/LW: one bottleneck_layers.<i> per stream, its input channels = bottleneck_layers.<i>.0.conv1"
                ".weight.shape[1] (and .shortcut.weight), streams ordered by scale, widest first" if kind == "cls" else
                "MoE: only each scale's total channels are in the file (scale_moes.<s>.experts.<e>.0.conv1.weight"
                ".shape[1] = sum of that scale's streams, gate_network.0.weight likewise): the split into streams "
                "is not, and MoE does not need it (it concatenates a scale's streams)") + "; the "
                                 "widths (8,4,2,1) are those of the tiny pipeline at --size 64 and are not in the file; features "
                                 "for this head: satdifuser extract --model tests/data/tiny_pipeline --size 64" +
                                 (" --layers conv2 (the config's layer_idxs)" if HEADS[kind]["layer_idxs"] else
                                  " (default layers attn1,conv2 = the config's layer_idxs)"),
            "moe": (f"MoE global_step counters are a non-persistent buffer: not in decoder_net; warmup_steps "
                    f"{decoder.scale_moes[0].warmup_steps} is the class default (not in the config). As the counters "
                    "are not saved, a process that loads this file starts them at 0: the original code's first "
                    "warmup_steps forward calls per scale after loading are dense (softmax over all experts), top-k "
                    "after; the file's global_step is the training step count, not these counters") if kind == "seg" else None,
        },
        "epoch": epoch, "global_step": global_step,
        "decoder_net": {k: [str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in sd.items()},
    }
    with open(os.path.join(OUT, f"runpy_head_{kind}.note.json"), "w") as f:
        json.dump(note, f, indent=1)
        f.write("\n")
    return obj, f"run.py save_model() dict of a {'GW fuser + linear classifier' if kind == 'cls' else 'MoE fuser + UPerNet'} " \
                f"head; see runpy_head_{kind}.note.json. config is an omegaconf DictConfig: NEWOBJ + BUILD of a state dict " \
                "{'_metadata': ContainerMetadata, '_parent': None, '_content': {key: AnyNode/ListConfig/DictConfig}} " \
                "whose child nodes point back to their parent (memo cycles through objects)"
