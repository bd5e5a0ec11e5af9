#!/usr/bin/python3
"""Writes a tiny random diffusers pipeline folder, the model of the CLI tests
and of the demo: tests/data/tiny_pipeline/

  model_index.json
  unet/config.json + diffusion_pytorch_model.safetensors   SD 2.1-shaped UNet2DConditionModel (f16)
  vae/config.json + diffusion_pytorch_model.safetensors    AutoencoderKL, 4 blocks = 8x down (f32)
  text_encoder/config.json + model.safetensors             CLIPTextModel, 2 layers, hidden 32 (f16)
  tokenizer/vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json (pad "!", as SD 2.x)
  scheduler/scheduler_config.json                          DDIMScheduler with SD 2.1's settings

The UNet has SD 2.1's block structure (CrossAttnDown x3 + Down, UpBlock2D +
CrossAttnUp x3, layers_per_block 2, linear projections, upcast attention), so
the extracted pyramid has SD's 21 streams at 4 scales, only narrower
(block_out_channels 8,16,24,32, 8-wide heads). Weights are diffusers' init perturbed
deterministically (seed 20250607) so no bias is 0 and no norm weight is 1.
Files are written by our own safetensors writer (the real library is not
packaged in Debian); configs by diffusers / transformers (0.17.0 / 4.31.0 from
/work/ref, with weights_tools/golden_common.py's import shims).

Usage: /usr/bin/python3 weights_tools/make_tiny_pipeline.py [--out tests/data/tiny_pipeline]
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import golden_common as gc  # noqa: E402

SEED = 20250607
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
                 trained_betas=None)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def save_weights(model, path, dtype):
    import torch
    sd = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    gc.save_safetensors(sd, path, metadata={"format": "pt"})
    return sum(v.numel() for v in sd.values())


def config_of(model):
    cfg = dict(model.config)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg["_class_name"] = type(model).__name__
    cfg["_diffusers_version"] = "0.17.0"
    return gc.jsonable(cfg)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "tests", "data", "tiny_pipeline"))
    args = ap.parse_args()
    gc.setup_env()
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    import golden_tokenizer as gt

    out = args.out
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)

    # UNet: SD 2.1's layout, narrow.
    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16, 24, 32), layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
        act_fn="silu", norm_num_groups=8, norm_eps=1e-5, cross_attention_dim=32, attention_head_dim=(1, 2, 3, 4),
        use_linear_projection=True, upcast_attention=True)
    gc.perturb_(unet, SEED)
    n_unet = save_weights(unet, os.path.join(out, "unet", "diffusion_pytorch_model.safetensors"), torch.float16)
    write_json(os.path.join(out, "unet", "config.json"), config_of(unet))

    # VAE: 4 blocks (8x downsampling, as SD), narrow; the whole AutoencoderKL is stored, as diffusers does.
    torch.manual_seed(SEED + 1)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 16, 16),
                        layers_per_block=1, act_fn="silu", latent_channels=4, norm_num_groups=8, sample_size=64,
                        scaling_factor=0.18215)
    gc.perturb_(vae, SEED + 1)
    n_vae = save_weights(vae, os.path.join(out, "vae", "diffusion_pytorch_model.safetensors"), torch.float32)
    write_json(os.path.join(out, "vae", "config.json"), config_of(vae))

    # Tokenizer: the tiny real BPE of the golden cases, pad "!" as SD 2.x.
    vocab, vocab_json, merges_txt = gt.build_vocab(300)
    gt.save_tokenizer_dir(os.path.join(out, "tokenizer"), vocab_json, merges_txt, "!")
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]

    # Text encoder: CLIPTextModel, exact GELU as OpenCLIP ViT-H (SD 2.x).
    tcfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, projection_dim=32,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu",
                          layer_norm_eps=1e-5, bos_token_id=bos, eos_token_id=eos, pad_token_id=0,
                          architectures=["CLIPTextModel"], torch_dtype="float16")
    torch.manual_seed(SEED + 2)
    text = CLIPTextModel(tcfg)
    gc.perturb_(text, SEED + 2, emb_std=0.5)
    n_text = save_weights(text, os.path.join(out, "text_encoder", "model.safetensors"), torch.float16)
    tc = {k: v for k, v in tcfg.to_diff_dict().items() if not k.startswith("_")}
    tc["transformers_version"] = "4.31.0"
    write_json(os.path.join(out, "text_encoder", "config.json"), gc.jsonable(tc))

    sched = DDIMScheduler(**SCHEDULER)
    sc = config_of(sched)
    sc["_class_name"] = "DDIMScheduler"
    sc["skip_prk_steps"] = True  # as SD 2.1's scheduler_config.json (read by other schedulers only)
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), sc)

    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.17.0",
        "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]})
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("A tiny random diffusers pipeline (SD 2.1-shaped, narrow) for satdifuser's tests and demo.\n"
                "Made by weights_tools/make_tiny_pipeline.py (seed %d). Not a trained model: its features carry\n"
                "no meaning, they only exercise the code path.\n" % SEED)
    total = 0
    for root, _, files in os.walk(out):
        total += sum(os.path.getsize(os.path.join(root, x)) for x in files)
    print(f"{out}: unet {n_unet} params (f16), vae {n_vae} (f32), text encoder {n_text} (f16); "
          f"{total / 1024:.0f} KiB in all")


if __name__ == "__main__":
    main()
