#!/usr/bin/python3
"""Builds a single-file Stable Diffusion checkpoint in the original LDM/CompVis
layout from a diffusers pipeline folder, the input of `satdifuser convert`'s
tests: tests/data/tiny_ldm.safetensors from tests/data/tiny_pipeline.

diffusers ships converters from the LDM layout only (scripts/convert_original_
stable_diffusion_to_diffusers.py); this script is the inverse, written from the
structure of the original modules:

  UNet  (ldm/modules/diffusionmodules/openaimodel.py UNetModel), prefix model.diffusion_model.
    time_embed.{0,2}               <- time_embedding.linear_{1,2}
    input_blocks.0.0               <- conv_in
    input_blocks.i (i = 1 + level*(L+1) + j, L = layers_per_block):
      j < L:  .0 ResBlock          <- down_blocks.level.resnets.j
              .1 SpatialTransformer<- down_blocks.level.attentions.j   (cross-attention levels)
      j == L: .0.op Downsample     <- down_blocks.level.downsamplers.0.conv   (all levels but the last)
    middle_block.{0,1,2}           <- mid_block.resnets.0, mid_block.attentions.0, mid_block.resnets.1
    output_blocks.i (i = level*(L+1) + j, j = 0..L):
      .0 ResBlock                  <- up_blocks.level.resnets.j
      .1 SpatialTransformer        <- up_blocks.level.attentions.j     (cross-attention levels)
      .1 or .2 Upsample (j == L)   <- up_blocks.level.upsamplers.0.conv (all levels but the last)
    out.{0,2}                      <- conv_norm_out, conv_out
    ResBlock: in_layers.0/2, emb_layers.1, out_layers.0/3, skip_connection
              <- norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut
    SpatialTransformer: the same names in both (norm, proj_in, transformer_blocks.k.*, proj_out)
  VAE   (ldm/modules/diffusionmodules/model.py Encoder/Decoder), prefix first_stage_model.
    encoder.down.i.block.j / .downsample.conv   <- encoder.down_blocks.i.resnets.j / .downsamplers.0.conv
    decoder.up.(n-1-i).block.j / .upsample.conv <- decoder.up_blocks.i.resnets.j / .upsamplers.0.conv
    {encoder,decoder}.mid.block_1/attn_1/block_2 <- mid_block.resnets.0/attentions.0/resnets.1
    attn_1.norm/q/k/v/proj_out (1x1 convs)      <- group_norm/to_q/to_k/to_v/to_out.0 (linears)
    norm_out <- conv_norm_out; nin_shortcut <- conv_shortcut; quant_conv, post_quant_conv as they are
  Text  (open_clip Transformer, SD 2.x FrozenOpenCLIPEmbedder), prefix cond_stage_model.model.
    token_embedding.weight, positional_embedding, ln_final <- embeddings.token_embedding.weight,
        embeddings.position_embedding.weight, final_layer_norm
    transformer.resblocks.i.{ln_1, attn.in_proj_weight/bias = cat(q, k, v), attn.out_proj, ln_2,
        mlp.c_fc, mlp.c_proj} <- encoder.layers.i.{layer_norm1, self_attn.{q,k,v}_proj,
        self_attn.out_proj, layer_norm2, mlp.fc1, mlp.fc2}
    SD 2.x runs the text tower to its penultimate layer, so the diffusers text encoder has one
    layer less than the checkpoint: this script appends one extra random resblock (and a random
    text_projection and logit_scale) that the converter must drop.
  Also written, as real checkpoints have them and the converter must skip them: the DDPM buffers
  betas and alphas_cumprod (scaled_linear 0.00085..0.012, 1000 steps) and model_ema.decay /
  model_ema.num_updates.

Each part keeps its dtype (the tiny pipeline: UNet f16, VAE f32, text f16). When diffusers 0.17
(/work/ref) imports, the result is checked against diffusers' own LDM -> diffusers functions
(convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, the OpenCLIP renaming tables): they must
give back every tensor of the pipeline bit for bit.

--full-size OUT.safetensors instead writes a random-weight checkpoint with the shapes of SD 2.1
(stabilityai/stable-diffusion-2-1 UNet and VAE configs, the OpenCLIP-H text tower with its 24th
resblock), f16, about 2.6 GB, and the diffusers configs it was made from beside it (OUT.configs/):
what `satdifuser convert` without --config-from must reproduce. Never in the repository.

Usage: /usr/bin/python3 weights_tools/make_ldm_checkpoint.py [--pipeline tests/data/tiny_pipeline]
           [--out tests/data/tiny_ldm.safetensors] [--no-check]
       /usr/bin/python3 weights_tools/make_ldm_checkpoint.py --full-size /tmp/sd21_ldm.safetensors
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import golden_common as gc  # noqa: E402

SEED = 20250611
RESNET = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"),
          ("out_layers.0", "norm2"), ("out_layers.3", "conv2"), ("skip_connection", "conv_shortcut")]
VAE_RESNET = [("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"),
              ("nin_shortcut", "conv_shortcut")]
VAE_ATTN = [("norm", "group_norm"), ("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")]


class Mover:
    """Moves tensors from a diffusers state dict (src) to LDM names (dst); at
    the end src must be empty, so nothing is forgotten."""

    def __init__(self, src, prefix):
        self.src, self.prefix, self.dst = dict(src), prefix, {}

    def put(self, ldm, diffusers, fn=None):
        t = self.src.pop(diffusers)
        self.dst[self.prefix + ldm] = fn(t) if fn else t

    def put_wb(self, ldm, diffusers, fn=None, optional=False):
        for wb in ("weight", "bias"):
            if optional and f"{diffusers}.{wb}" not in self.src:
                continue
            self.put(f"{ldm}.{wb}", f"{diffusers}.{wb}", fn if wb == "weight" else None)

    def put_prefix(self, ldm, diffusers):
        """Every tensor under diffusers. -> ldm. with the same remainder."""
        keys = [k for k in self.src if k.startswith(diffusers + ".")]
        assert keys, f"nothing under {diffusers}"
        for k in keys:
            self.put(ldm + k[len(diffusers):], k)

    def done(self):
        assert not self.src, f"not moved: {sorted(self.src)[:10]}"
        return self.dst


def unet_to_ldm(sd, cfg):
    m = Mover(sd, "model.diffusion_model.")
    L, n = cfg["layers_per_block"], len(cfg["block_out_channels"])
    down_attn = [t.startswith("CrossAttn") for t in cfg["down_block_types"]]
    up_attn = [t.startswith("CrossAttn") for t in cfg["up_block_types"]]

    def resnet(ldm, diffusers):
        for a, b in RESNET:
            m.put_wb(f"{ldm}.{a}", f"{diffusers}.{b}", optional=(a == "skip_connection"))

    m.put_wb("time_embed.0", "time_embedding.linear_1")
    m.put_wb("time_embed.2", "time_embedding.linear_2")
    m.put_wb("input_blocks.0.0", "conv_in")
    i = 1
    for level in range(n):
        for j in range(L):
            resnet(f"input_blocks.{i}.0", f"down_blocks.{level}.resnets.{j}")
            if down_attn[level]:
                m.put_prefix(f"input_blocks.{i}.1", f"down_blocks.{level}.attentions.{j}")
            i += 1
        if level < n - 1:
            m.put_wb(f"input_blocks.{i}.0.op", f"down_blocks.{level}.downsamplers.0.conv")
            i += 1
    resnet("middle_block.0", "mid_block.resnets.0")
    m.put_prefix("middle_block.1", "mid_block.attentions.0")
    resnet("middle_block.2", "mid_block.resnets.1")
    i = 0
    for level in range(n):
        for j in range(L + 1):
            resnet(f"output_blocks.{i}.0", f"up_blocks.{level}.resnets.{j}")
            k = 1
            if up_attn[level]:
                m.put_prefix(f"output_blocks.{i}.1", f"up_blocks.{level}.attentions.{j}")
                k = 2
            if j == L and level < n - 1:
                m.put_wb(f"output_blocks.{i}.{k}.conv", f"up_blocks.{level}.upsamplers.0.conv")
            i += 1
    m.put_wb("out.0", "conv_norm_out")
    m.put_wb("out.2", "conv_out")
    return m.done()


def vae_to_ldm(sd, cfg):
    m = Mover(sd, "first_stage_model.")
    L, n = cfg["layers_per_block"], len(cfg["block_out_channels"])
    to_conv = lambda t: t.reshape(t.shape + (1, 1))  # noqa: E731  linear (C, C) -> 1x1 conv (C, C, 1, 1)

    def resnet(ldm, diffusers):
        for a, b in VAE_RESNET:
            m.put_wb(f"{ldm}.{a}", f"{diffusers}.{b}", optional=(a == "nin_shortcut"))

    def mid(part):
        resnet(f"{part}.mid.block_1", f"{part}.mid_block.resnets.0")
        for a, b in VAE_ATTN:
            m.put_wb(f"{part}.mid.attn_1.{a}", f"{part}.mid_block.attentions.0.{b}",
                     fn=None if a == "norm" else to_conv)
        resnet(f"{part}.mid.block_2", f"{part}.mid_block.resnets.1")

    m.put_wb("encoder.conv_in", "encoder.conv_in")
    for i in range(n):
        for j in range(L):
            resnet(f"encoder.down.{i}.block.{j}", f"encoder.down_blocks.{i}.resnets.{j}")
        if i < n - 1:
            m.put_wb(f"encoder.down.{i}.downsample.conv", f"encoder.down_blocks.{i}.downsamplers.0.conv")
    mid("encoder")
    m.put_wb("encoder.norm_out", "encoder.conv_norm_out")
    m.put_wb("encoder.conv_out", "encoder.conv_out")
    m.put_wb("quant_conv", "quant_conv")
    m.put_wb("post_quant_conv", "post_quant_conv")
    m.put_wb("decoder.conv_in", "decoder.conv_in")
    mid("decoder")
    for i in range(n):  # decoder.up is numbered from the lowest resolution up: the reverse of up_blocks
        for j in range(L + 1):
            resnet(f"decoder.up.{n - 1 - i}.block.{j}", f"decoder.up_blocks.{i}.resnets.{j}")
        if i < n - 1:
            m.put_wb(f"decoder.up.{n - 1 - i}.upsample.conv", f"decoder.up_blocks.{i}.upsamplers.0.conv")
    m.put_wb("decoder.norm_out", "decoder.conv_norm_out")
    m.put_wb("decoder.conv_out", "decoder.conv_out")
    return m.done()


def text_to_openclip(sd, cfg, gen):
    import torch
    m = Mover(sd, "cond_stage_model.model.")
    m.put("token_embedding.weight", "text_model.embeddings.token_embedding.weight")
    m.put("positional_embedding", "text_model.embeddings.position_embedding.weight")
    m.put_wb("ln_final", "text_model.final_layer_norm")
    layers = cfg["num_hidden_layers"]
    for i in range(layers):
        h, r = f"text_model.encoder.layers.{i}", f"transformer.resblocks.{i}"
        m.put_wb(f"{r}.ln_1", f"{h}.layer_norm1")
        for wb in ("weight", "bias"):
            q, k, v = (m.src.pop(f"{h}.self_attn.{p}_proj.{wb}") for p in "qkv")
            m.dst[f"{m.prefix}{r}.attn.in_proj_{wb}"] = torch.cat([q, k, v], dim=0)
        m.put_wb(f"{r}.attn.out_proj", f"{h}.self_attn.out_proj")
        m.put_wb(f"{r}.ln_2", f"{h}.layer_norm2")
        m.put_wb(f"{r}.mlp.c_fc", f"{h}.mlp.fc1")
        m.put_wb(f"{r}.mlp.c_proj", f"{h}.mlp.fc2")
    out = m.done()
    # The last resblock, which SD 2.x does not use, and the projection to the joint space.
    dtype = out[f"cond_stage_model.model.transformer.resblocks.0.ln_1.weight"].dtype
    extra = {}
    for k, t in out.items():
        if k.startswith("cond_stage_model.model.transformer.resblocks.0."):
            name = k.replace("resblocks.0.", f"resblocks.{layers}.")
            extra[name] = (torch.randn(t.shape, generator=gen) * 0.1).to(dtype)
    out.update(extra)
    d = cfg["hidden_size"]
    out["cond_stage_model.model.text_projection"] = (torch.randn((d, d), generator=gen) * 0.1).to(dtype)
    out["cond_stage_model.model.logit_scale"] = torch.tensor(4.6052, dtype=torch.float32)
    return out


def schedule_buffers():
    import torch
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return {"betas": betas.float(), "alphas_cumprod": alphas_cumprod.float(),
            "model_ema.decay": torch.tensor(0.9999, dtype=torch.float32),
            "model_ema.num_updates": torch.tensor(1000, dtype=torch.int32)}


def check_with_diffusers(ckpt, parts, cfgs):
    """diffusers' own conversion of the checkpoint must give back the pipeline."""
    import torch
    gc.setup_env()
    import diffusers.pipelines.paint_by_example as pbe
    if not hasattr(pbe, "PaintByExampleImageEncoder"):  # needs transformers' vision classes: not used here
        pbe.PaintByExampleImageEncoder = object
    from diffusers.pipelines.stable_diffusion import convert_from_ckpt as cv

    def same(name, got, want):
        assert sorted(got) == sorted(want), f"{name}: names differ: {sorted(set(got) ^ set(want))[:10]}"
        for k in want:
            assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, f"{name}: {k}"
            assert torch.equal(got[k], want[k]), f"{name}: {k} values differ"
        print(f"  diffusers' conversion gives back {name}: {len(want)} tensors, bit for bit")

    ucfg = dict(cfgs["unet"], class_embed_type=None)
    same("unet", cv.convert_ldm_unet_checkpoint(dict(ckpt), ucfg), parts["unet"])
    same("vae", cv.convert_ldm_vae_checkpoint(dict(ckpt), cfgs["vae"]), parts["vae"])
    # convert_open_clip_checkpoint() downloads the SD 2 text encoder and drops resblocks.23 by
    # name; its renaming loop, with the same tables, and the tiny model's last block dropped:
    last = f"resblocks.{cfgs['text']['num_hidden_layers']}."
    d = ckpt["cond_stage_model.model.text_projection"].shape[0]
    got = {}
    for key, t in ckpt.items():
        if last in key:
            continue
        if key in cv.textenc_conversion_map:
            got[cv.textenc_conversion_map[key]] = t
        if key.startswith("cond_stage_model.model.transformer."):
            new_key = key[len("cond_stage_model.model.transformer."):]
            sub = lambda s: cv.textenc_pattern.sub(lambda mt: cv.protected[cv.re.escape(mt.group(0))], s)  # noqa
            if new_key.endswith(".in_proj_weight") or new_key.endswith(".in_proj_bias"):
                wb = "weight" if new_key.endswith("weight") else "bias"
                new_key = sub(new_key[: new_key.rindex(".")])
                for i, p in enumerate("qkv"):
                    got[f"{new_key}.{p}_proj.{wb}"] = t[i * d:(i + 1) * d]
            else:
                got[sub(new_key)] = t
    same("text_encoder", got, parts["text"])


def full_size(path):
    """Random SD 2.1-shaped checkpoint (f16) for checking the configs built from the shapes."""
    import torch
    gc.setup_env()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    import golden_fullsize as gf
    gen = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    cdir = path + ".configs"
    os.makedirs(cdir, exist_ok=True)
    ckpt = {}

    def keep(name, model, cfg, fn):
        sd = {k: v.detach().to(torch.float16) for k, v in model.state_dict().items()}
        sd.pop("text_model.embeddings.position_ids", None)
        ckpt.update(fn(sd, cfg))
        with open(os.path.join(cdir, name + ".json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)

    unet = UNet2DConditionModel(**gf.SD21_UNET)
    keep("unet", unet, dict(gf.SD21_UNET), unet_to_ldm)
    del unet
    vae = AutoencoderKL(**gf.SD_VAE)
    keep("vae", vae, dict(gf.SD_VAE), vae_to_ldm)
    del vae
    tcfg = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, projection_dim=512,
                num_hidden_layers=23, num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    text = CLIPTextModel(CLIPTextConfig(**tcfg))
    keep("text_encoder", text, tcfg, lambda sd, cfg: text_to_openclip(sd, cfg, gen))
    del text
    ckpt.update(schedule_buffers())
    gc.save_safetensors(ckpt, path, metadata={"format": "pt"})
    print(f"wrote {path}: {len(ckpt)} tensors, {os.path.getsize(path)} bytes; configs in {cdir}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(HERE)
    ap.add_argument("--pipeline", default=os.path.join(root, "tests/data/tiny_pipeline"))
    ap.add_argument("--out", default=os.path.join(root, "tests/data/tiny_ldm.safetensors"))
    ap.add_argument("--no-check", action="store_true", help="skip the check with diffusers' converter")
    ap.add_argument("--full-size", metavar="OUT", help="write an SD 2.1-shaped random checkpoint instead")
    args = ap.parse_args()
    if args.full_size:
        return full_size(args.full_size)
    import torch
    gen = torch.Generator().manual_seed(SEED)

    def load(sub, weights, config):
        with open(os.path.join(args.pipeline, sub, config)) as f:
            cfg = json.load(f)
        return gc.load_safetensors(os.path.join(args.pipeline, sub, weights)), cfg

    unet, ucfg = load("unet", "diffusion_pytorch_model.safetensors", "config.json")
    vae, vcfg = load("vae", "diffusion_pytorch_model.safetensors", "config.json")
    text, tcfg = load("text_encoder", "model.safetensors", "config.json")
    text.pop("text_model.embeddings.position_ids", None)  # a buffer, not a weight
    ckpt = {}
    ckpt.update(unet_to_ldm(unet, ucfg))
    ckpt.update(vae_to_ldm(vae, vcfg))
    ckpt.update(text_to_openclip(text, tcfg, gen))
    ckpt.update(schedule_buffers())
    if not args.no_check:
        check_with_diffusers(ckpt, {"unet": unet, "vae": vae, "text": text},
                             {"unet": ucfg, "vae": vcfg, "text": tcfg})
    gc.save_safetensors(ckpt, args.out, metadata={"format": "pt"})
    print(f"wrote {args.out}: {len(ckpt)} tensors, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
