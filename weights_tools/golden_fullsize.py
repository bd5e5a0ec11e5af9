"""--full-size golden cases: random-weight, full-size SD 2.1 modules (GBs; never
into golden/). Same recipe as the tiny cases (perturbed init, fp32 run, fp64 run
for the tolerance) but memory-lean: the weights are written first, then the
model is converted to float64 in place for the reference run.

  unet_sd21_full       stabilityai/stable-diffusion-2-1 UNet config, 32x32 latent, batch 1, t = 21,
                       captures of every up_blocks attn1/conv2 (the 21 SatDiFuser feature streams)
  vae_encoder_sd_full  SD VAE (128,256,512,512), 256x256 image
  clip_text_openclip_h_full  OpenCLIP ViT-H text tower as SD 2.x ships it: 23 layers, 1024 wide, 16 heads,
                       MLP 4096, gelu, vocab 49408
"""
import fnmatch
import os

import torch

import golden_common as gc

SD21_UNET = dict(sample_size=96, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
                 freq_shift=0, down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                                 "CrossAttnDownBlock2D", "DownBlock2D"),
                 mid_block_type="UNetMidBlock2DCrossAttn",
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 only_cross_attention=False, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                 downsample_padding=1, mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32,
                 norm_eps=1e-5, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                 dual_cross_attention=False, use_linear_projection=True, upcast_attention=True,
                 num_class_embeds=None, resnet_time_scale_shift="default")

SD_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
              layers_per_block=2, act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=768,
              scaling_factor=0.18215)


def to_fp64_inplace(model):
    from diffusers.models.attention_processor import Attention
    model.double()
    for m in model.modules():
        if isinstance(m, Attention):
            m.upcast_attention = False
            m.upcast_softmax = False


def run_pair(model, run, inputs, paths, keep=()):
    with torch.no_grad():
        with gc.Capture(model, paths) as c32:
            out32 = run(model, inputs)
        to_fp64_inplace(model)
        torch.set_default_dtype(torch.float64)
        try:
            in64 = {k: (v if k in keep else v.double()) for k, v in inputs.items()}
            with gc.Capture(model, paths) as c64:
                out64 = run(model, in64)
        finally:
            torch.set_default_dtype(torch.float32)
    err = max([gc.max_err(out32[k], out64[k]) for k in out32] + [gc.max_err(c32.out[k], c64.out[k]) for k in c32.out])
    return out32, c32.out, err


def write(out, name, module, config, model, tensors_fn, notes_fn, mg):
    """Writes weights first (float32), then runs fp32 + fp64 and writes the rest."""
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    print(f"  {name}: writing weights", flush=True)
    gc.save_safetensors(model.state_dict(), os.path.join(d, "weights.safetensors"))
    tensors, err = tensors_fn()
    atol = gc.tolerance(err)
    notes = notes_fn(err)
    # weights are already on disk: write_case with an empty dict would overwrite them, so write the rest here
    import json
    case = {"module": module, "config": gc.jsonable(config), "rtol": mg.RTOL, "atol": atol, "notes": notes}
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f, indent=2)
        f.write("\n")
    gc.save_safetensors(tensors, os.path.join(d, "tensors.safetensors"))
    print(f"  wrote {d} (atol {atol:g}, max |fp32-fp64| {err:.3g})", flush=True)


def case_unet(out, mg):
    from diffusers import UNet2DConditionModel
    seed = 901
    torch.manual_seed(seed)
    model = UNet2DConditionModel(**SD21_UNET)
    gc.perturb_(model, seed)
    model.eval()
    cfg = gc.diffusers_config(model)
    g = torch.Generator().manual_seed(seed + 1)
    x = {"sample": torch.randn(1, 4, 32, 32, generator=g), "timestep": torch.tensor([21.0]),
         "encoder_hidden_states": torch.randn(1, 77, 1024, generator=g)}
    paths = mg.matching_modules(model, mg.UP_CAPTURES[:2])

    def tensors():
        out32, caps, err = run_pair(model, mg.run_unet, x, paths)
        t = {f"input.{k}": v for k, v in x.items()}
        t.update({f"output.{k}": v for k, v in out32.items()})
        t.update({f"capture.{k}": v for k, v in caps.items()})
        return t, err

    def notes(err):
        return (f"Full-size random-weight diffusers UNet2DConditionModel with the stabilityai/stable-diffusion-2-1 "
                f"unet config, latent 1x4x32x32 (256x256 image), timestep 21, captures of every up_blocks attn1 "
                f"and resnet conv2 output. Seed {seed}. Measured max |fp32-fp64| = {err:.3g}. {mg.HOW} "
                f"{mg.lib_notes()}")
    write(out, "unet_sd21_full", "unet", cfg, model, tensors, notes, mg)


def case_vae(out, mg):
    from diffusers import AutoencoderKL
    seed = 902
    torch.manual_seed(seed)
    model = AutoencoderKL(**SD_VAE)
    gc.perturb_(model, seed)
    model.eval()
    cfg = gc.diffusers_config(model)
    x = {"image": mg.vae_image(seed, 1, 256, 256)}

    def tensors():
        out32, caps, err = run_pair(model, mg.run_vae, x, ["encoder.mid_block.attentions.0"])
        t = {"input.image": x["image"]}
        t.update({f"output.{k}": v for k, v in out32.items()})
        t.update({f"capture.{k}": v for k, v in caps.items()})
        return t, err

    def notes(err):
        return (f"Full-size random-weight diffusers AutoencoderKL (SD VAE config), whole state_dict, image "
                f"1x3x256x256; latent_mean/latent_logvar of vae.encode(image).latent_dist. Seed {seed}. Measured "
                f"max |fp32-fp64| = {err:.3g}. {mg.HOW} {mg.lib_notes()}")
    write(out, "vae_encoder_sd_full", "vae_encoder", cfg, model, tensors, notes, mg)


def case_clip(out, mg):
    from transformers import CLIPTextConfig, CLIPTextModel
    seed = 903
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=1024, intermediate_size=4096, projection_dim=512,
                         num_hidden_layers=23, num_attention_heads=16, max_position_embeddings=77,
                         hidden_act="gelu", layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
                         architectures=["CLIPTextModel"], torch_dtype="float32")
    torch.manual_seed(seed)
    model = CLIPTextModel(cfg)
    gc.perturb_(model, seed, emb_std=0.5)
    model.eval()
    # "A satellite image" in the real SD 2.x vocabulary would be a handful of ids: use
    # bos, 3 and 20 random ids, eos, then pad "!" (id 0) as SD 2.x does
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.zeros(2, 77, dtype=torch.int64)
    for b, n in enumerate((3, 20)):
        ids[b, 0] = 49406
        ids[b, 1:1 + n] = torch.randint(1, 49406, (n,), generator=g)
        ids[b, 1 + n] = 49407
    x = {"input_ids": ids}

    def tensors():
        out32, _, err = run_pair(model, mg.run_clip, x, [], keep=("input_ids",))
        return {"input.input_ids": ids, "output.last_hidden_state": out32["last_hidden_state"]}, err

    def notes(err):
        return (f"Full-size random-weight transformers CLIPTextModel shaped as SD 2.x's OpenCLIP ViT-H text tower "
                f"(23 layers, hidden 1024, 16 heads, MLP 4096, gelu, vocab 49408); ids: bos 49406, 3 / 20 random "
                f"ids, eos 49407, pad 0. Seed {seed}. Measured max |fp32-fp64| = {err:.3g}. {mg.HOW} "
                f"{mg.lib_notes()}")
    write(out, "clip_text_openclip_h_full", "clip_text", mg.clip_config_dict(cfg), model, tensors, notes, mg)


CASES = {"unet_sd21_full": case_unet, "vae_encoder_sd_full": case_vae, "clip_text_openclip_h_full": case_clip}


def run(out, only, mg):
    for name, fn in CASES.items():
        if only and not (fnmatch.fnmatch(name, only) or only in name):
            continue
        print(f"case {name}", flush=True)
        fn(out, mg)
