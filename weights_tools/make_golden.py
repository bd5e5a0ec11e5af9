#!/usr/bin/env python3
"""Writes the PyTorch golden cases of satdifuser (format: shared/golden-format.md).

Each case runs the original module (diffusers 0.17.0, transformers 4.31.0,
SatDiFuser @ 51148cb) with perturbed random weights on fixed inputs, in float32
on CPU with one thread, and stores weights, inputs, outputs and captured
intermediate tensors. The tolerance is measured: the same case is run in
float64 and atol = 20x max|fp32 - fp64| (rounded up, at least 1e-5).

Usage (see docs/golden-cases.md for the setup of /work/ref):
  PYTHONPATH=/work/ref/diffusers/src:/work/ref/transformers/src:/work/ref/hfhub/src:/work/ref/ftfy \\
    /usr/bin/python3 weights_tools/make_golden.py [--out golden/] [--only PATTERN] [--full-size]
"""
import argparse
import copy
import fnmatch
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_common as gc  # noqa: E402

gc.setup_env()

import torch  # noqa: E402

import golden_tokenizer as gt  # noqa: E402
import golden_pipeline  # noqa: E402

RTOL = 1e-4
HOW = ("Made by weights_tools/make_golden.py: every parameter perturbed from its init "
       "(norm weights 1+N(0,0.1), biases +N(0,0.1), weights +N(0,1)*0.5/sqrt(fan_in)); "
       "atol = 20x the measured max |fp32 - fp64| over all stored outputs/captures (rounded up, floor 1e-5).")

UP_CAPTURES = (r"up_blocks\.\d+\.attentions\.\d+\.transformer_blocks\.\d+\.attn1$",
               r"up_blocks\.\d+\.resnets\.\d+\.conv2$",
               r"up_blocks\.\d+\.resnets\.\d+$")


def lib_notes():
    return (gc.versions() + ". transformers = huggingface/transformers main @ 49eb35756 (the commit that "
            "v4.31.0 was branched from, parent of the 4.32.0.dev0 bump; the full repo was too large to fetch); "
            "diffusers = tag v0.17.0; SatDiFuser = yurujaja/SatDiFuser @ 51148cb. torch 1.13 shim: "
            "torch.baddbmm(input, b1, b2, beta=0, alpha) computed as alpha * bmm(b1, b2) (torch 1.13 reads "
            "diffusers' torch.empty input and sometimes returns NaN even for a zero input; newer torch ignores "
            "input when beta is 0).")


def matching_modules(model, patterns):
    regs = [re.compile(p) for p in patterns]
    return [n for n, _ in model.named_modules() if any(r.search(n) for r in regs)]


def fp64_copy(model):
    """float64 twin of a model; attention 'upcast' (a cast to float32) disabled
    so that the reference really runs in float64."""
    from diffusers.models.attention_processor import Attention
    m = copy.deepcopy(model).double()
    for mod in m.modules():
        if isinstance(mod, Attention):
            mod.upcast_attention = False
            mod.upcast_softmax = False
    return m


def to64(x):
    return x.double() if torch.is_tensor(x) and x.dtype == torch.float32 else x


def measure(run, model, inputs, capture_paths, keep64=()):
    """Runs model in float32 and float64: returns (outputs32, captures32, err)."""
    with torch.no_grad():
        with gc.Capture(model, capture_paths) as c32:
            out32 = run(model, inputs)
        m64 = fp64_copy(model)
        in64 = {k: (v if k in keep64 else to64(v)) for k, v in inputs.items()}
        torch.set_default_dtype(torch.float64)  # tensors the modules create on the fly
        try:
            with gc.Capture(m64, capture_paths) as c64:
                out64 = run(m64, in64)
        finally:
            torch.set_default_dtype(torch.float32)
    err = 0.0
    for k in out32:
        err = max(err, gc.max_err(out32[k], out64[k]))
    for k in c32.out:
        err = max(err, gc.max_err(c32.out[k], c64.out[k]))
    return out32, c32.out, err


# ------------------------------------------------------------------- UNet

def unet_sd21_config(**over):
    cfg = dict(sample_size=8, in_channels=4, out_channels=4, center_input_sample=False,
               flip_sin_to_cos=True, freq_shift=0,
               down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
               mid_block_type="UNetMidBlock2DCrossAttn",
               up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
               block_out_channels=(16, 32, 32), layers_per_block=2, downsample_padding=1,
               mid_block_scale_factor=1, act_fn="silu", norm_num_groups=8, norm_eps=1e-5,
               cross_attention_dim=32, attention_head_dim=(2, 2, 4), dual_cross_attention=False,
               use_linear_projection=True, upcast_attention=True, only_cross_attention=False,
               num_class_embeds=None, resnet_time_scale_shift="default")
    cfg.update(over)
    return cfg


def run_unet(model, x):
    kw = {}
    if "metadata" in x:
        kw["metadata"] = x["metadata"]
    return {"sample": model(x["sample"], x["timestep"], encoder_hidden_states=x["encoder_hidden_states"],
                            **kw).sample}


def unet_inputs(seed, B, h, w, L, D, timesteps, num_metadata=0):
    g = torch.Generator().manual_seed(seed + 1)
    x = {"sample": torch.randn(B, 4, h, w, generator=g),
         "timestep": torch.tensor(timesteps, dtype=torch.float32),
         "encoder_hidden_states": torch.randn(B, L, D, generator=g)}
    if num_metadata:
        # DiffusionSat metadata (lon, lat, gsd, cloud cover, year, month, day),
        # already normalised to the timestep-like range the model embeds.
        x["metadata"] = torch.rand(B, num_metadata, generator=g) * 1000.0
    return x


def make_unet_case(out, name, seed, model, inputs, what, store_dtype=torch.float32, capture=True,
                   class_name=None):
    gc.perturb_(model, seed)
    if store_dtype != torch.float32:
        with torch.no_grad():  # the golden is computed from the rounded weights
            for p in model.parameters():
                p.copy_(p.to(store_dtype).float())
    model.eval()
    paths = matching_modules(model, UP_CAPTURES) if capture else []
    out32, caps, err = measure(run_unet, model, inputs, paths)
    atol = gc.tolerance(err)
    tensors = {f"input.{k}": v for k, v in inputs.items()}
    tensors.update({f"output.{k}": v for k, v in out32.items()})
    tensors.update({f"capture.{k}": v for k, v in caps.items()})
    weights = {k: v.to(store_dtype) for k, v in model.state_dict().items()}
    notes = (f"{what} Seed {seed} (torch.manual_seed before construction, perturbation generator seed {seed}, "
             f"inputs generator seed {seed + 1}). Measured max |fp32-fp64| = {err:.3g} "
             f"(fp64 run with attention upcast disabled). {HOW} {lib_notes()}")
    return gc.write_case(out, name, "unet", gc.diffusers_config(model, class_name), weights, tensors,
                         atol, RTOL, notes)


def case_unet_sd21_linear(out, store_dtype=torch.float32, name="unet_sd21_linear"):
    from diffusers import UNet2DConditionModel
    seed = 101
    torch.manual_seed(seed)
    model = UNet2DConditionModel(**unet_sd21_config())
    x = unet_inputs(seed, 2, 8, 8, 77, 32, [-1.0, 421.0])
    what = ("diffusers UNet2DConditionModel, SD 2.1-like tiny config (linear proj_in/proj_out, per-block head "
            "counts, upcast_attention, flip_sin_to_cos, freq_shift 0), batch 2 at timesteps [-1, 421] "
            "(-1 = the first call of SatDiFuser's DDIM inversion). Captures: every up_blocks.* resnet output, "
            "resnet conv2 output and transformer attn1 output (after to_out, before the residual add).")
    if store_dtype != torch.float32:
        what += (f" weights.safetensors stored as {str(store_dtype).replace('torch.', '')}; the golden was "
                 "computed in float32 from exactly these rounded weights.")
    return make_unet_case(out, name, seed, model, x, what, store_dtype=store_dtype)


def case_unet_f16(out):
    return case_unet_sd21_linear(out, torch.float16, "unet_f16")


def case_unet_sd1_conv(out):
    from diffusers import UNet2DConditionModel
    seed = 102
    torch.manual_seed(seed)
    cfg = unet_sd21_config(down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                           block_out_channels=(16, 32), attention_head_dim=2, use_linear_projection=False,
                           upcast_attention=False, freq_shift=1, cross_attention_dim=24)
    model = UNet2DConditionModel(**cfg)
    x = unet_inputs(seed, 2, 8, 12, 77, 24, [981.0, 1.0])
    what = ("diffusers UNet2DConditionModel, SD 1.x-like tiny config: use_linear_projection false (proj_in/"
            "proj_out are 1x1 convs), attention_head_dim an int (2; diffusers 0.17 uses it as the number of "
            "heads of every block, so head size = channels/2), upcast_attention false, freq_shift 1, "
            "cross_attention_dim 24, non-square 8x12 latent, batch 2 at timesteps [981, 1].")
    return make_unet_case(out, "unet_sd1_conv", seed, model, x, what)


def case_unet_metadata(out):
    sys.path.insert(0, os.path.join(gc.REF, "SatDiFuser"))
    from diffusionsat.sat_unet import SatUNet
    seed = 103
    torch.manual_seed(seed)
    cfg = unet_sd21_config(down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                           block_out_channels=(8, 16), attention_head_dim=(2, 4), norm_num_groups=4)
    cfg.pop("mid_block_type")
    for k in ("only_cross_attention",):
        cfg.pop(k)
    model = SatUNet(**cfg, use_metadata=True, num_metadata=7)
    x = unet_inputs(seed, 2, 8, 8, 77, 32, [-1.0, 161.0], num_metadata=7)
    what = ("DiffusionSat SatUNet (SatDiFuser diffusionsat/sat_unet.py, imported unchanged) with use_metadata "
            "true, num_metadata 7: each metadata value goes through the UNet's time_proj (sinusoidal) and its "
            "own TimestepEmbedding (metadata_embedding.<i>), summed into the time embedding. Extra input "
            "input.metadata (B,7) float32, uniform in [0,1000).")
    return make_unet_case(out, "unet_metadata", seed, model, x, what, class_name="SatUNet")


# ------------------------------------------------- UNet: what the tolerance catches

def groupnorm_input_variance(model, run, inputs, names):
    """name -> (min, max) over (batch item, group) of the biased variance of the
    input of each named GroupNorm (what its eps is added to)."""
    mods = dict(model.named_modules())
    res, handles = {}, []
    for n in names:
        def hook(mod, inp, output, n=n):
            t = inp[0]
            v = t.reshape(t.shape[0], mod.num_groups, -1).double().var(dim=-1, unbiased=False)
            res[n] = (float(v.min()), float(v.max()))
        handles.append(mods[n].register_forward_hook(hook))
    try:
        with torch.no_grad():
            run(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return res


def max_change(run, model, inputs, ref_out, ref_caps, capture_paths, edit):
    """Reruns a float32 copy of model after edit(copy) and returns the max abs
    change of (the outputs, the captures) against (ref_out, ref_caps)."""
    m = copy.deepcopy(model)
    edit(m)
    with torch.no_grad():
        with gc.Capture(m, capture_paths) as c:
            out = run(m, inputs)
    d_out = max(gc.max_err(out[k], ref_out[k]) for k in ref_out)
    d_cap = max([gc.max_err(c.out[k], ref_caps[k]) for k in ref_caps] or [0.0])
    return d_out, d_cap


def set_groupnorm_eps(model, kind, eps):
    """eps of every GroupNorm of Transformer2DModel.norm (kind 'transformer')
    or ResnetBlock2D.norm1/norm2 (kind 'resnet')."""
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.transformer_2d import Transformer2DModel
    for mod in model.modules():
        if kind == "transformer" and isinstance(mod, Transformer2DModel):
            mod.norm.eps = eps
        if kind == "resnet" and isinstance(mod, ResnetBlock2D):
            mod.norm1.eps = eps
            mod.norm2.eps = eps


def set_upcast(model, on):
    from diffusers.models.attention_processor import Attention
    for mod in model.modules():
        if isinstance(mod, Attention):
            mod.upcast_attention = on


def case_unet_eps_sensitive(out):
    """SD 2.1-like UNet in which the inputs of some GroupNorms have a per-group
    variance of a few 1e-6, so that their eps (1e-5 ResNet, 1e-6 transformer)
    is not negligible: a wrong eps moves the output by far more than atol."""
    from diffusers import UNet2DConditionModel
    seed = 104
    scale = 3e-3
    torch.manual_seed(seed)
    cfg = unet_sd21_config(block_out_channels=(8, 16, 16), norm_num_groups=4, cross_attention_dim=16,
                           attention_head_dim=(2, 2, 4))
    model = UNet2DConditionModel(**cfg)
    gc.perturb_(model, seed)
    with torch.no_grad():
        # conv_in's output (ResNet down_blocks.0.resnets.0.norm1 input, and the first skip, which
        # the last up ResNet's norm1 sees concatenated) and down_blocks.0.resnets.0's output
        # (= conv_in output + conv2 output: the input of down_blocks.0.attentions.0.norm) become tiny.
        for lin in (model.conv_in, model.down_blocks[0].resnets[0].conv2):
            lin.weight.mul_(scale)
            lin.bias.mul_(scale)
    model.eval()
    x = unet_inputs(seed, 2, 8, 8, 77, 16, [-1.0, 421.0])
    paths = matching_modules(model, UP_CAPTURES)
    out32, caps, err = measure(run_unet, model, x, paths)
    atol = gc.tolerance(err)

    small = ["down_blocks.0.resnets.0.norm1", "down_blocks.0.attentions.0.norm",
             "up_blocks.2.resnets.2.norm1"]
    var = groupnorm_input_variance(model, run_unet, x, small)
    d_tr = max_change(run_unet, model, x, out32, caps, paths, lambda m: set_groupnorm_eps(m, "transformer", 1e-5))
    d_rn = max_change(run_unet, model, x, out32, caps, paths, lambda m: set_groupnorm_eps(m, "resnet", 1e-6))
    d_up = max_change(run_unet, model, x, out32, caps, paths, lambda m: set_upcast(m, False))
    for what, d in (("transformer GroupNorm eps 1e-5", d_tr), ("ResNet GroupNorm eps 1e-6", d_rn)):
        if not d[0] > 10 * atol:
            raise RuntimeError(f"unet_eps_sensitive: {what} moves the output by only {d[0]:.3g} (atol {atol:g})")
    print(f"  max change (output, captures): transformer eps 1e-5 {d_tr[0]:.3g}, {d_tr[1]:.3g}; resnet eps 1e-6 "
          f"{d_rn[0]:.3g}, {d_rn[1]:.3g}; upcast off {d_up[0]:.3g}, {d_up[1]:.3g}; atol {atol:g}", flush=True)

    tensors = {f"input.{k}": v for k, v in x.items()}
    tensors.update({f"output.{k}": v for k, v in out32.items()})
    tensors.update({f"capture.{k}": v for k, v in caps.items()})
    vtxt = "; ".join(f"{n} [{a:.2g}, {b:.2g}]" for n, (a, b) in var.items())
    what = ("diffusers UNet2DConditionModel, SD 2.1-like tiny config (linear proj, head counts (2,2,4), "
            "upcast_attention, block_out_channels (8,16,16), norm_num_groups 4, cross_attention_dim 16), batch 2 "
            f"at timesteps [-1, 421], 8x8 latent. After the perturbation, the weight and bias of conv_in and of "
            f"down_blocks.0.resnets.0.conv2 are multiplied by {scale:g}, so that the inputs of some GroupNorms "
            "have a per-group variance comparable to their eps and eps is not negligible. Per-group input "
            f"variance [min, max] over (batch item, group): {vtxt} (in the last one only the groups of the "
            "conv_in skip channels are small; the others are O(0.1-1)). Checked by rerunning the float32 model "
            "with a wrong eps; max abs change of output.sample (of the captures): Transformer2DModel.norm eps "
            f"1e-5 instead of 1e-6: {d_tr[0]:.3g} ({d_tr[1]:.3g}), {d_tr[0] / atol:.0f}x atol; ResnetBlock2D "
            f"norm1/norm2 eps 1e-6 instead of norm_eps 1e-5: {d_rn[0]:.3g} ({d_rn[1]:.3g}), {d_rn[0] / atol:.0f}x "
            f"atol. upcast_attention off instead of on: {d_up[0]:.3g} ({d_up[1]:.3g}): a float32 run cannot see "
            "it (the upcast is a cast to float32, which only changes float16 runs). Captures: every "
            "up_blocks.* resnet output, resnet conv2 output and transformer attn1 output.")
    notes = (f"{what} Seed {seed} (torch.manual_seed before construction, perturbation generator seed {seed}, "
             f"inputs generator seed {seed + 1}). Measured max |fp32-fp64| = {err:.3g} "
             f"(fp64 run with attention upcast disabled). {HOW} {lib_notes()}")
    return gc.write_case(out, "unet_eps_sensitive", "unet", gc.diffusers_config(model), model.state_dict(),
                         tensors, atol, RTOL, notes)


def case_unet_odd_latent(out):
    """10x6 latent through three downsamplers: 10x6 -> 5x3 -> 3x2 -> 2x1, so the
    up path takes diffusers' forward_upsample_size branch (upsample to the skip's
    size: 2x1 -> 3x2 -> 5x3 -> 10x6)."""
    from diffusers import UNet2DConditionModel
    seed = 105
    torch.manual_seed(seed)
    cfg = unet_sd21_config(down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                           up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                           block_out_channels=(8, 8, 16, 16), norm_num_groups=4, layers_per_block=1,
                           cross_attention_dim=16, attention_head_dim=(2, 2, 2, 4))
    model = UNet2DConditionModel(**cfg)
    x = unet_inputs(seed, 1, 10, 6, 77, 16, [261.0])
    what = ("diffusers UNet2DConditionModel, SD 2.1-like tiny config with 4 levels (3 downsamplers; linear "
            "proj, head counts (2,2,2,4), upcast_attention, block_out_channels (8,8,16,16), norm_num_groups 4, "
            "layers_per_block 1, cross_attention_dim 16), batch 1 at timestep 261, 10x6 latent: the down path "
            "goes 10x6 -> 5x3 -> 3x2 -> 2x1 (stride-2 conv, padding 1), and since 10 and 6 are not multiples "
            "of 2^3 the UNet passes upsample_size, so every Upsample2D resizes (nearest) to its skip's size: "
            "2x1 -> 3x2 -> 5x3 -> 10x6 (only the last is an exact 2x). Captures: every up_blocks.* resnet "
            "output, resnet conv2 output and transformer attn1 output.")
    return make_unet_case(out, "unet_odd_latent", seed, model, x, what)


# -------------------------------------------------------------------- VAE

def vae_model(boc, lpb, groups, sample_size):
    from diffusers import AutoencoderKL
    n = len(boc)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=boc,
                         layers_per_block=lpb, act_fn="silu", latent_channels=4, norm_num_groups=groups,
                         sample_size=sample_size, scaling_factor=0.18215)


def run_vae(model, x):
    post = model.encode(x["image"]).latent_dist
    return {"latent_mean": post.mean, "latent_logvar": post.logvar}


def vae_image(seed, B, H, W):
    """A smooth random image in [-1,1] (bilinearly upsampled noise)."""
    g = torch.Generator().manual_seed(seed + 1)
    low = torch.randn(B, 3, H // 4, W // 4, generator=g)
    img = torch.nn.functional.interpolate(low, size=(H, W), mode="bilinear", align_corners=False)
    img = img + 0.1 * torch.randn(B, 3, H, W, generator=g)
    return img.clamp(-1, 1)


def make_vae_case(out, name, seed, boc, lpb, groups, B, H, W, whole, deprecated_names):
    torch.manual_seed(seed)
    model = vae_model(boc, lpb, groups, max(H, W))
    gc.perturb_(model, seed)
    model.eval()
    x = {"image": vae_image(seed, B, H, W)}
    out32, caps, err = measure(run_vae, model, x, ["encoder.mid_block.attentions.0"])
    atol = gc.tolerance(err)
    sd = model.state_dict()
    if not whole:
        sd = {k: v for k, v in sd.items() if k.startswith(("encoder.", "quant_conv."))}
    if deprecated_names:
        # the names of the pre-0.14 AttentionBlock that SD checkpoints on the hub still carry;
        # diffusers 0.17 renames them on load (ModelMixin._convert_deprecated_attention_blocks).
        ren = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
        new = {}
        for k, v in sd.items():
            if ".mid_block.attentions." in k:
                for a, b in ren.items():
                    k = k.replace(a, b)
            new[k] = v
        check = dict(new)
        model._convert_deprecated_attention_blocks(check)
        assert set(check) == set(sd), "deprecated-name round trip failed"
        sd = new
    tensors = {"input.image": x["image"]}
    tensors.update({f"output.{k}": v for k, v in out32.items()})
    tensors.update({f"capture.{k}": v for k, v in caps.items()})
    what = (f"diffusers AutoencoderKL encoder path (vae.encode(image).latent_dist: encoder + quant_conv; "
            f"latent_mean = first 4 channels of quant_conv output, latent_logvar = the other 4 after "
            f"clamp(-30,20)), block_out_channels {list(boc)}, layers_per_block {lpb}, norm_num_groups {groups}, "
            f"image {B}x3x{H}x{W}. weights: "
            + ("the whole AutoencoderKL state_dict (decoder too)" if whole else
               "the encoder.* and quant_conv.* entries of AutoencoderKL.state_dict()")
            + ("; the mid-block attention stored under the deprecated names query/key/value/proj_attn "
               "(as SD checkpoints have them; diffusers 0.17 maps them to to_q/to_k/to_v/to_out.0 on load)"
               if deprecated_names else "")
            + ". Capture: encoder.mid_block.attentions.0 output (B,C,h,w), after its residual add.")
    notes = (f"{what} Seed {seed}. Measured max |fp32-fp64| = {err:.3g}. {HOW} {lib_notes()}")
    return gc.write_case(out, name, "vae_encoder", gc.diffusers_config(model), sd, tensors, atol, RTOL, notes)


def case_vae_encoder_a(out):
    return make_vae_case(out, "vae_encoder_a", 201, (16, 16, 32, 32), 1, 8, 1, 32, 32,
                         whole=False, deprecated_names=False)


def case_vae_encoder_b(out):
    return make_vae_case(out, "vae_encoder_b", 202, (8, 16, 16, 24), 2, 4, 2, 24, 40,
                         whole=True, deprecated_names=True)


# ------------------------------------------------------------ CLIP text

_TOK = {}


def tokenizer_for(pad, use_ftfy=True):
    """(tokenizer, vocab.json text, merges.txt text) of our tiny BPE."""
    key = (pad, use_ftfy)
    if key not in _TOK:
        vocab, vj, mt = gt.build_vocab(300)
        d = tempfile.mkdtemp(prefix="golden_tok_")
        gt.save_tokenizer_dir(d, vj, mt, pad)
        _TOK[key] = (gt.load_clip_tokenizer(d, use_ftfy), vj, mt)
    return _TOK[key]


def clip_config(act, layers, tok):
    from transformers import CLIPTextConfig
    return CLIPTextConfig(vocab_size=len(tok.encoder), hidden_size=32, intermediate_size=64,
                          projection_dim=32, num_hidden_layers=layers, num_attention_heads=4,
                          max_position_embeddings=77, hidden_act=act, layer_norm_eps=1e-5,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id, architectures=["CLIPTextModel"], torch_dtype="float32")


def clip_config_dict(cfg):
    d = cfg.to_diff_dict()
    return {k: v for k, v in d.items() if not k.startswith("_")}


def run_clip(model, x):
    return {"last_hidden_state": model(x["input_ids"])[0]}


def make_clip_case(out, name, seed, act, layers, pad, prompts, what):
    from transformers import CLIPTextModel
    tok, _, _ = tokenizer_for(pad)
    cfg = clip_config(act, layers, tok)
    torch.manual_seed(seed)
    model = CLIPTextModel(cfg)
    gc.perturb_(model, seed, emb_std=0.5)
    model.eval()
    ids = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    x = {"input_ids": ids.to(torch.int64)}
    out32, _, err = measure(run_clip, model, x, [], keep64=("input_ids",))
    atol = gc.tolerance(err)
    tensors = {"input.input_ids": x["input_ids"], "output.last_hidden_state": out32["last_hidden_state"]}
    notes = (f"transformers CLIPTextModel ({what}), {layers} layers, hidden 32, 4 heads, MLP 64, "
             f"hidden_act {act}, causal mask, no attention_mask (as SatDiFuser calls it), final LayerNorm. "
             f"input_ids from our tiny CLIPTokenizer (vocab {len(tok.encoder)}, pad {pad!r} = id "
             f"{tok.pad_token_id}) on {prompts!r}. Embeddings += N(0,0.5). Seed {seed}. Measured max "
             f"|fp32-fp64| = {err:.3g}. {HOW} {lib_notes()}")
    return gc.write_case(out, name, "clip_text", clip_config_dict(cfg), model.state_dict(), tensors,
                         atol, RTOL, notes)


def case_clip_text_gelu(out):
    return make_clip_case(out, "clip_text_gelu", 301, "gelu", 3, "!",
                          ["A satellite image", "an aerial view of farmland near the river, seen from space"],
                          "OpenCLIP ViT-H-like: exact erf GELU, SD 2.x pad '!'")


def case_clip_text_quickgelu(out):
    return make_clip_case(out, "clip_text_quickgelu", 302, "quick_gelu", 2, "<|endoftext|>",
                          ["A satellite image", gt.LONG_TEXT],
                          "OpenAI CLIP ViT-L-like: quick_gelu x*sigmoid(1.702x), SD 1.x pad = eos; "
                          "second prompt longer than 77 tokens, truncated")


# ------------------------------------------------------------- tokenizer

def make_tokenizer_case(out, name, pad, use_ftfy, texts, what):
    tok, vj, mt = tokenizer_for(pad, use_ftfy)
    enc = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    ids = enc.input_ids.to(torch.int64)
    assert ids.shape == (len(texts), 77)
    cfg = {"texts": texts, "pad_token": pad, "model_max_length": 77,
           "text_cleaning": "ftfy" if use_ftfy else "basic",
           "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    path = ("ftfy path: text = whitespace_clean(ftfy.fix_text(text)).lower()" if use_ftfy else
            "BasicTokenizer path (ftfy not importable, as in an environment built from SatDiFuser's "
            "requirements.txt, which does not list ftfy): text = ' '.join(BasicTokenizer(strip_accents=False, "
            "do_split_on_punc=False).tokenize(text)) (drops control chars, NFC, lower case, spaces around CJK)")
    notes = (f"transformers' slow CLIPTokenizer.from_pretrained(dir) on our vocab.json/merges.txt (a real byte-"
             f"level BPE: 256 byte symbols, their '</w>' forms, {mt.count(chr(10)) - 1} merges learned from a short "
             f"English text, <|startoftext|>={tok.bos_token_id}, <|endoftext|>={tok.eos_token_id}; "
             f"tokenizer_config.json with do_lower_case true and the special tokens as AddedToken dicts, like the "
             f"SD checkpoints), called as SatDiFuser's get_tokens_embedding does: padding='max_length', "
             f"max_length=77, truncation=True. pad {pad!r} = id {tok.pad_token_id}. {what} Text cleaning: {path}. "
             f"from_pretrained registers the special tokens (bos, eos, unk, pad) as no-split tokens: they are "
             f"cut out of the text before BPE (case-insensitively, since do_lower_case lowercases the text "
             f"around them) and mapped straight to their ids; with pad '!' (SD 2.x) every '!' in a text becomes "
             f"id 0 without BPE. Only the 256 byte symbols are needed to encode any text: the real 49408-token "
             f"vocabulary is not needed for the code path. {lib_notes()}")
    return gc.write_case(out, name, "tokenizer", cfg, {}, {"output.input_ids": ids}, 0.0, 0.0, notes,
                         files={"vocab.json": vj, "merges.txt": mt})


def case_tokenizer_sd2(out):
    return make_tokenizer_case(out, "tokenizer_sd2", "!", True, gt.TEXTS_COMMON,
                               "SD 2.x settings (pad '!').")


def case_tokenizer_sd1(out):
    return make_tokenizer_case(out, "tokenizer_sd1", "<|endoftext|>", True, gt.TEXTS_COMMON,
                               "SD 1.x settings (pad = <|endoftext|>).")


def case_tokenizer_sd2_basic(out):
    return make_tokenizer_case(out, "tokenizer_sd2_basic", "!", False, gt.TEXTS_COMMON + gt.TEXTS_FTFY_FIXES,
                               "SD 2.x settings, fallback cleaning.")


def case_tokenizer_ftfy_fixes(out):
    return make_tokenizer_case(out, "tokenizer_ftfy_fixes", "!", True, gt.TEXTS_FTFY_FIXES,
                               "Texts that ftfy.fix_text (6.1.1, default options) changes: mojibake, curly "
                               "quotes, ligatures, full-width forms; HTML entities stay (transformers does not "
                               "unescape).")


def case_tokenizer_special(out):
    return make_tokenizer_case(out, "tokenizer_special", "!", True, gt.TEXTS_SPECIAL,
                               "Special-token strings and '!' inside the texts.")


# ------------------------------------------------------------------ DDIM

SD21_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                      beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                      steps_offset=1, prediction_type="v_prediction", trained_betas=None)


def make_ddim_case(out, name, sched_cfg, steps, what):
    from diffusers import DDIMScheduler
    s = DDIMScheduler(**sched_cfg)
    s.set_timesteps(steps)
    tensors = {"output.timesteps": s.timesteps.to(torch.int64).clone(),
               "output.alphas_cumprod": s.alphas_cumprod.to(torch.float32).clone(),
               "output.betas": s.betas.to(torch.float32).clone(),
               "output.final_alpha_cumprod": torch.tensor(float(s.final_alpha_cumprod), dtype=torch.float32)}
    cfg = {"scheduler": gc.diffusers_config(s), "num_inference_steps": steps}
    notes = (f"diffusers DDIMScheduler(**config.scheduler).set_timesteps({steps}): {what} output.timesteps are "
             f"scheduler.timesteps (descending, int64); alphas_cumprod and betas float32 (1000); "
             f"final_alpha_cumprod a float32 scalar. {lib_notes()}")
    return gc.write_case(out, name, "ddim_schedule", cfg, {}, tensors, 1e-7, 1e-6, notes)


def case_ddim_sd21_50(out):
    return make_ddim_case(out, "ddim_sd21_50", SD21_SCHEDULER, 50, "SD 2.1 settings, 50 steps.")


def case_ddim_sd21_20(out):
    return make_ddim_case(out, "ddim_sd21_20", SD21_SCHEDULER, 20, "SD 2.1 settings, 20 steps.")


def case_ddim_trailing_30(out):
    cfg = dict(SD21_SCHEDULER, beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
               set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon", timestep_spacing="trailing")
    return make_ddim_case(out, "ddim_trailing_30", cfg, 30,
                          "linear betas, set_alpha_to_one, timestep_spacing 'trailing', 30 steps.")


CASES = {
    "unet_sd21_linear": case_unet_sd21_linear,
    "unet_sd1_conv": case_unet_sd1_conv,
    "unet_metadata": case_unet_metadata,
    "unet_f16": case_unet_f16,
    "unet_eps_sensitive": case_unet_eps_sensitive,
    "unet_odd_latent": case_unet_odd_latent,
    "vae_encoder_a": case_vae_encoder_a,
    "vae_encoder_b": case_vae_encoder_b,
    "clip_text_gelu": case_clip_text_gelu,
    "clip_text_quickgelu": case_clip_text_quickgelu,
    "tokenizer_sd2": case_tokenizer_sd2,
    "tokenizer_sd1": case_tokenizer_sd1,
    "tokenizer_sd2_basic": case_tokenizer_sd2_basic,
    "tokenizer_ftfy_fixes": case_tokenizer_ftfy_fixes,
    "tokenizer_special": case_tokenizer_special,
    "ddim_sd21_50": case_ddim_sd21_50,
    "ddim_sd21_20": case_ddim_sd21_20,
    "ddim_trailing_30": case_ddim_trailing_30,
}
CASES.update(golden_pipeline.cases(sys.modules[__name__]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="output folder (default golden/ of the repo)")
    ap.add_argument("--only", default=None, help="glob or substring of case names to make")
    ap.add_argument("--full-size", action="store_true",
                    help="random-weight full-size SD 2.1 UNet/VAE encoder/OpenCLIP cases (GBs; needs --out)")
    args = ap.parse_args()
    if args.full_size:
        if not args.out:
            ap.error("--full-size writes GBs: give --out DIR outside golden/")
        import golden_fullsize
        golden_fullsize.run(args.out, args.only, sys.modules[__name__])
        return
    out = args.out or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")
    total = 0
    for name, fn in CASES.items():
        if args.only and not (fnmatch.fnmatch(name, args.only) or args.only in name):
            continue
        print(f"case {name}", flush=True)
        total += fn(out)
    print(f"done: {total / 1e6:.2f} MB written to {out}")


if __name__ == "__main__":
    main()
