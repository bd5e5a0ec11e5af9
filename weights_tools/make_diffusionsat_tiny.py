#!/usr/bin/python3
"""tests/data/diffusionsat_tiny: tests/data/tiny_pipeline in DiffusionSat's release layout with PyTorch
.bin weights (torch.save, zip format), for the checkpoint reader of issue 16. Run through
weights_tools/make_torch_checkpoints.py (which also writes the expected values it refers to), or
alone: /usr/bin/python3 weights_tools/make_diffusionsat_tiny.py. See DSAT_README below for the layout.
"""
import collections
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden_common import load_safetensors, save_safetensors  # noqa: E402
from make_torch_checkpoints import DSAT, OUT, ROOT, TINY, file_facts  # noqa: E402


# ------------------------------------------------------------------ DiffusionSat release layout

UNET_ORDER = ["conv_in", "time_embedding", "metadata_embedding", "down_blocks", "up_blocks", "mid_block",
              "conv_norm_out", "conv_out"]


def _natural(name):
    parts = name.split(".")
    head = UNET_ORDER.index(parts[0]) if parts[0] in UNET_ORDER else len(UNET_ORDER)
    return [head] + [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def make_diffusionsat_tiny():
    """tests/data/tiny_pipeline laid out as DiffusionSat's release (zenodo 13751498 / 13756199)."""
    import torch
    if os.path.isdir(DSAT):
        shutil.rmtree(DSAT)
    os.makedirs(DSAT)
    shutil.copyfile(os.path.join(TINY, "model_index.json"), os.path.join(DSAT, "model_index.json"))
    for sub in ("tokenizer", "scheduler"):
        shutil.copytree(os.path.join(TINY, sub), os.path.join(DSAT, sub))
    # UNet: SatUNet (DiffusionSat diffusionsat/sat_unet.py): metadata_embedding = ModuleList of num_metadata
    # TimestepEmbedding(timestep_input_dim = block_out_channels[0], time_embed_dim = 4 x that)
    unet_dir = os.path.join(DSAT, "checkpoint-150000", "unet")
    os.makedirs(unet_dir)
    cfg = json.load(open(os.path.join(TINY, "unet", "config.json")))
    cfg["_class_name"] = "SatUNet"
    cfg["use_metadata"] = True
    cfg["num_metadata"] = 7
    with open(os.path.join(unet_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    sd = load_safetensors(os.path.join(TINY, "unet", "diffusion_pytorch_model.safetensors"))
    c0 = cfg["block_out_channels"][0]
    dt = sd["time_embedding.linear_1.weight"].dtype
    g = torch.Generator().manual_seed(1620)
    md = collections.OrderedDict()
    for i in range(7):
        for lin, (o, n) in (("linear_1", (4 * c0, c0)), ("linear_2", (4 * c0, 4 * c0))):
            # in the dtype of the rest of the tiny UNet (float16)
            md[f"metadata_embedding.{i}.{lin}.weight"] = (torch.randn(o, n, generator=g) / n ** 0.5).to(dt)
            md[f"metadata_embedding.{i}.{lin}.bias"] = (0.1 * torch.randn(o, generator=g)).to(dt)
    sd.update(md)
    sd = collections.OrderedDict((k, sd[k]) for k in sorted(sd, key=_natural))
    torch.save(sd, os.path.join(unet_dir, "diffusion_pytorch_model.bin"))
    save_safetensors(md, os.path.join(OUT, "diffusionsat_tiny_unet_metadata.expected.safetensors"))
    # VAE: float16 (HalfStorage)
    os.makedirs(os.path.join(DSAT, "vae"))
    shutil.copyfile(os.path.join(TINY, "vae", "config.json"), os.path.join(DSAT, "vae", "config.json"))
    vae = load_safetensors(os.path.join(TINY, "vae", "diffusion_pytorch_model.safetensors"))
    vae16 = collections.OrderedDict((k, v.half()) for k, v in vae.items())
    torch.save(vae16, os.path.join(DSAT, "vae", "diffusion_pytorch_model.bin"))
    # text encoder: two shards + index, as transformers' save_pretrained(max_shard_size=...) writes them
    te_dir = os.path.join(DSAT, "text_encoder")
    os.makedirs(te_dir)
    shutil.copyfile(os.path.join(TINY, "text_encoder", "config.json"), os.path.join(te_dir, "config.json"))
    te = load_safetensors(os.path.join(TINY, "text_encoder", "model.safetensors"))
    names = sorted(te)
    total = sum(te[k].numel() * te[k].element_size() for k in names)
    shards, acc = [collections.OrderedDict(), collections.OrderedDict()], 0
    for k in names:
        shards[0 if acc < total // 2 else 1][k] = te[k]
        acc += te[k].numel() * te[k].element_size()
    weight_map = {}
    for i, sh in enumerate(shards):
        fn = f"pytorch_model-{i + 1:05d}-of-00002.bin"
        torch.save(sh, os.path.join(te_dir, fn))
        weight_map.update({k: fn for k in sh})
    with open(os.path.join(te_dir, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(DSAT, "README.md"), "w") as f:
        f.write(DSAT_README.format(total=total, n0=len(shards[0]), n1=len(shards[1])))
    # loaded back
    back = torch.load(os.path.join(unet_dir, "diffusion_pytorch_model.bin"))
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    back = torch.load(os.path.join(DSAT, "vae", "diffusion_pytorch_model.bin"))
    assert all(back[k].dtype == torch.float16 and torch.equal(back[k], vae16[k]) for k in vae16)
    back = {}
    for fn in sorted(set(weight_map.values())):
        back.update(torch.load(os.path.join(te_dir, fn)))
    assert set(back) == set(te) and all(torch.equal(back[k], te[k]) for k in te)
    facts = {}
    for dp, _, fns in sorted(os.walk(DSAT)):
        for fn in sorted(fns):
            if fn.endswith(".bin"):
                facts[os.path.relpath(os.path.join(dp, fn), ROOT)] = file_facts(os.path.join(dp, fn))
    return facts


DSAT_README = """DiffusionSat's release layout (zenodo records 13751498 / 13756199, the checkpoint SatDiFuser
loads: `SatUNet.from_pretrained(root, subfolder="checkpoint-150000/unet")`) made from the tiny random
pipeline in ../tiny_pipeline by weights_tools/make_torch_checkpoints.py. Not a trained model.

    model_index.json, tokenizer/, scheduler/      copied from tiny_pipeline
    checkpoint-150000/unet/config.json           tiny_pipeline's UNet config + "_class_name": "SatUNet",
                                                 "use_metadata": true, "num_metadata": 7
    checkpoint-150000/unet/diffusion_pytorch_model.bin
                                                 torch.save (zip, prefix diffusion_pytorch_model/) of the
                                                 tiny UNet's f16 tensors plus SatUNet's metadata_embedding.<i>.
                                                 linear_1 (32, 8) / linear_2 (32, 32) f16 weights and biases,
                                                 i = 0..6 (random; values in ../torch/diffusionsat_tiny_unet_metadata.expected.safetensors)
    vae/diffusion_pytorch_model.bin              the tiny VAE converted to float16 (HalfStorage, torch's
                                                 round-to-nearest-even of tiny_pipeline's f32 values), as
                                                 the repackaged DiffusionSat VAE on the hub
    text_encoder/pytorch_model-0000{{1,2}}-of-00002.bin + pytorch_model.bin.index.json
                                                 the tiny CLIP text encoder (float16, as in tiny_pipeline) in
                                                 two shards ({n0} and {n1} tensors; total_size {total} bytes)

There is no unet/ at the root, as in the release: the UNet comes from checkpoint-150000/unet. The
release also has checkpoint-150000/unet_ema/ (an EMA copy SatDiFuser does not use); it is not
mirrored here. The UNet's and text encoder's values equal tiny_pipeline's safetensors exactly (both
are float16 there too); the VAE's are tiny_pipeline's rounded to float16, so features from this
folder equal those of tiny_pipeline only with its VAE rounded the same way (e.g. a copy of
tiny_pipeline whose vae/ holds this .bin, or its `satdifuser convert --out` safetensors).
SatDiFuser runs the SatUNet with use_metadata False (run.py passes it to from_pretrained), so the
metadata embeddings are present in the file but unused by its features.
"""


if __name__ == "__main__":
    import torch
    torch.set_num_threads(1)
    for k, v in make_diffusionsat_tiny().items():
        print(k, v["pickle_globals"])
