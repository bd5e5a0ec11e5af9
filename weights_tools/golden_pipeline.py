"""DDIM-inversion and extract golden cases: SatDiFuser's own code path
(archs/ldm_extractor.py: LDMExtractor.run_inversion -> generalized_steps ->
get_xt_next, forward hooks + collect_feats, get_tokens_embedding) run on a tiny
pipeline (SatUNet, AutoencoderKL, CLIPTextModel, CLIPTokenizer, DDIMScheduler).
"""
import os
import sys
import types

import torch

import golden_common as gc

SAVE_TIMESTEPS = [47, 45, 40]
NUM_TIMESTEPS = 50
PROMPT = "A satellite image"


class Cfg(dict):
    """The OmegaConf-like config LDMExtractor reads (attribute access + get)."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k)


def ldm_extractor_class():
    sys.path.insert(0, os.path.join(gc.REF, "SatDiFuser"))
    from archs.ldm_extractor import LDMExtractor
    return LDMExtractor


def tiny_unet(mg, seed):
    sys.path.insert(0, os.path.join(gc.REF, "SatDiFuser"))
    from diffusionsat.sat_unet import SatUNet
    cfg = mg.unet_sd21_config(block_out_channels=(8, 16, 16), attention_head_dim=(2, 2, 4),
                              norm_num_groups=4, cross_attention_dim=16)
    cfg.pop("mid_block_type")
    cfg.pop("only_cross_attention")
    torch.manual_seed(seed)
    # as SatDiFuser's run.py loads DiffusionSat: use_metadata=False, num_metadata=0
    unet = SatUNet(**cfg, use_metadata=False, num_metadata=0)
    gc.perturb_(unet, seed)
    return unet.eval()


def tiny_parts(mg, seed):
    from diffusers import DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel
    unet = tiny_unet(mg, seed)
    torch.manual_seed(seed + 10)
    vae = mg.vae_model((8, 8, 16, 16), 1, 4, 64)
    gc.perturb_(vae, seed + 10)
    vae.eval()
    tok, vj, mt = mg.tokenizer_for("!")
    tcfg = CLIPTextConfig(vocab_size=len(tok.encoder), hidden_size=16, intermediate_size=32, projection_dim=16,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                          hidden_act="gelu", layer_norm_eps=1e-5, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                          architectures=["CLIPTextModel"], torch_dtype="float32")
    torch.manual_seed(seed + 20)
    text = CLIPTextModel(tcfg)
    gc.perturb_(text, seed + 20, emb_std=0.5)
    text.eval()
    sched = DDIMScheduler(**mg.SD21_SCHEDULER)
    return dict(unet=unet, vae=vae, text_encoder=text, tokenizer=tok, scheduler=sched, vocab=vj, merges=mt,
                text_config=tcfg)


def make_extractor(parts, batch, img_size):
    LDMExtractor = ldm_extractor_class()
    cfg = Cfg(num_timesteps=NUM_TIMESTEPS, save_timesteps=list(SAVE_TIMESTEPS), batch_size=batch,
              img_size=img_size, diffusion_mode="inversion", prompt=PROMPT,
              layer_idxs={"up_blocks": {"attn1": "all", "conv2": "all"}})
    pipe = types.SimpleNamespace(device=torch.device("cpu"), scheduler=parts["scheduler"], unet=parts["unet"],
                                 vae=parts["vae"], text_encoder=parts["text_encoder"],
                                 tokenizer=parts["tokenizer"])
    return LDMExtractor(cfg, pipe)


def parts64(mg, parts):
    p = dict(parts)
    p["unet"] = mg.fp64_copy(parts["unet"])
    p["vae"] = mg.fp64_copy(parts["vae"])
    p["text_encoder"] = mg.fp64_copy(parts["text_encoder"])
    return p


class CallRecorder:
    """Records, per UNet call, its timestep, its input latent and the outputs
    of the feature layers (the same modules LDMExtractor hooks)."""

    def __init__(self, unet, paths):
        self.unet, self.paths = unet, paths
        self.t = None
        self.latents, self.caps = {}, {}
        self.handles = []

    def __enter__(self):
        def pre(mod, args):
            self.t = int(round(float(args[1].reshape(-1)[0])))
            self.latents[self.t] = args[0].detach().clone()
        self.handles.append(self.unet.register_forward_pre_hook(pre))
        mods = dict(self.unet.named_modules())
        for p in self.paths:
            def hook(mod, inp, out, p=p):
                self.caps[(p, self.t)] = out.detach().clone()
            self.handles.append(mods[p].register_forward_hook(hook))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False


def feature_paths(unet):
    out = []
    for i, blk in enumerate(unet.up_blocks):
        for suffix in ("attn1", "conv2"):
            out += [f"up_blocks.{i}.{n}" for n, _ in blk.named_modules() if n.endswith(suffix)]
    return out


def run_inversion(parts, latent, cond, capture_ts, dtype):
    """LDMExtractor.run_inversion on `latent` with conditioning `cond`."""
    torch.set_default_dtype(dtype)
    try:
        ex = make_extractor(parts, latent.shape[0], latent.shape[-1] * 8)
        ex.cond = cond
        with CallRecorder(parts["unet"], feature_paths(parts["unet"])) as rec:
            with torch.no_grad():
                ex.run_inversion(latent)
    finally:
        torch.set_default_dtype(torch.float32)
    outs = {f"noisy_latent_t{T}": rec.latents[T] for T in capture_ts}
    caps = {f"{p}@t{T}": v for (p, T), v in rec.caps.items() if T in capture_ts}
    return outs, caps, sorted(rec.latents)


def case_ddim_inversion(mg, out):
    seed = 401
    parts = tiny_parts(mg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    latent = torch.randn(2, 4, 8, 8, generator=g)
    cond = torch.randn(2, 77, 16, generator=g)
    capture_ts = [21, 61, 161]
    o32, c32, calls = run_inversion(parts, latent, cond, capture_ts, torch.float32)
    p64 = parts64(mg, parts)
    o64, c64, _ = run_inversion(p64, latent.double(), cond.double(), capture_ts, torch.float64)
    err = max([gc.max_err(o32[k], o64[k]) for k in o32] + [gc.max_err(c32[k], c64[k]) for k in c32])
    atol = gc.tolerance(err)
    tensors = {"input.latent": latent, "input.encoder_hidden_states": cond}
    tensors.update({f"output.{k}": v for k, v in o32.items()})
    tensors.update({f"capture.{k}": v for k, v in c32.items()})
    sched = parts["scheduler"]
    cfg = {"unet": gc.diffusers_config(parts["unet"]), "scheduler": gc.diffusers_config(sched),
           "num_inference_steps": NUM_TIMESTEPS, "capture_timesteps": capture_ts, "convention": "satdifuser"}
    notes = (f"SatDiFuser archs/ldm_extractor.py imported unchanged: LDMExtractor(cfg, pipe) with num_timesteps 50, "
             f"save_timesteps {SAVE_TIMESTEPS}, layer_idxs up_blocks attn1/conv2 'all', diffusion_mode inversion; "
             f"its cond replaced by input.encoder_hidden_states; then LDMExtractor.run_inversion(input.latent) -> "
             f"generalized_steps(run_inversion=True, guidance -1, eta 0) -> get_xt_next, which stops after "
             f"max_i = 50 - min(save_timesteps) = 10 UNet calls, at t = {calls}. The UNet (SatDiFuser's SatUNet, "
             f"use_metadata False, num_metadata 0, tiny SD 2.1-like config) is called on x_t at timestep t as a "
             f"float tensor (B) (t = -1 first, alpha 1) and its output used as epsilon. output.noisy_latent_t<T> "
             f"= the UNet's input latent at the call with timestep T (= x right after the step reaching T), "
             f"recorded by a forward pre-hook; capture.<path>@t<T> = the output of every up_blocks attn1/conv2 "
             f"module during that call (the modules LDMExtractor hooks). Seed {seed}. Measured max |fp32-fp64| = "
             f"{err:.3g} (fp64 run: UNet in float64, alphas from the float32 betas as in the original). "
             f"{mg.HOW} {mg.lib_notes()}")
    return gc.write_case(out, "ddim_inversion_satdifuser", "ddim_inversion", cfg,
                         parts["unet"].state_dict(), tensors, atol, mg.RTOL, notes)


def run_extract(parts, image, dtype):
    torch.set_default_dtype(dtype)
    try:
        with torch.no_grad():
            # the C default: the posterior mean (run.py samples latent_dist with a generator)
            latent = parts["vae"].encode(image).latent_dist.mean * 0.18215
            ex = make_extractor(parts, image.shape[0], image.shape[-1])
            _, text_emb = ldm_module().get_tokens_embedding(parts["tokenizer"], parts["text_encoder"],
                                                           torch.device("cpu"), PROMPT)
            feats, _ = ex.forward(latent)
    finally:
        torch.set_default_dtype(torch.float32)
    outs = {"latent": latent, "text_embedding": text_emb}
    for i, ts in enumerate(SAVE_TIMESTEPS):
        for s, f in enumerate(feats[ts]):
            outs[f"feat.{i}.{s}"] = f
    return outs, ex


def ldm_module():
    ldm_extractor_class()
    return sys.modules["archs.ldm_extractor"]


def case_extract(mg, out):
    seed = 501
    parts = tiny_parts(mg, seed)
    image = mg.vae_image(seed, 2, 64, 64)
    o32, ex = run_extract(parts, image, torch.float32)
    o64, _ = run_extract(parts64(mg, parts), image.double(), torch.float64)
    err = max(gc.max_err(o32[k], o64[k]) for k in o32)
    atol = gc.tolerance(err)
    tensors = {"input.image": image}
    tensors.update({f"output.{k}": v for k, v in o32.items()})
    weights = {}
    for prefix, m in (("unet.", parts["unet"]), ("vae.", parts["vae"]), ("text_encoder.", parts["text_encoder"])):
        for k, v in m.state_dict().items():
            if prefix == "vae." and not k.startswith(("encoder.", "quant_conv.")):
                continue
            weights[prefix + k] = v
    tcfg = {k: v for k, v in parts["text_config"].to_diff_dict().items() if not k.startswith("_")}
    cfg = {"unet": gc.diffusers_config(parts["unet"]), "vae": gc.diffusers_config(parts["vae"]),
           "text_encoder": tcfg, "scheduler": gc.diffusers_config(parts["scheduler"]),
           "num_timesteps": NUM_TIMESTEPS, "save_timesteps": SAVE_TIMESTEPS, "prompt": PROMPT,
           "layers": ["attn1", "conv2"], "latent": "mean",
           "tokenizer": {"pad_token": "!", "model_max_length": 77, "text_cleaning": "ftfy"}}
    dims = {str(k): v for k, v in ex.collected_dims.items()}
    shapes = {k: list(v.shape) for k, v in o32.items() if k.startswith("feat.")}
    notes = (f"SatDiFuser's extraction path on a tiny pipeline: latent = vae.encode(image).latent_dist.mean * "
             f"0.18215 (run.py samples; the C default is the mean); LDMExtractor(cfg, pipe) (archs/ldm_extractor.py "
             f"imported unchanged; cfg: num_timesteps 50, save_timesteps {SAVE_TIMESTEPS}, layer_idxs up_blocks "
             f"attn1/conv2 'all', diffusion_mode inversion, prompt {PROMPT!r}, img_size 64) then "
             f"LDMExtractor.forward(latent) -> get_feats -> run_inversion -> generalized_steps, features from its "
             f"forward hooks through collect_feats (grouped by width, largest first): feat.<i>.<scale> = "
             f"feats[save_timesteps[i]][scale], shapes {shapes}; collected_dims {dims}. output.text_embedding = "
             f"get_tokens_embedding(tokenizer, text_encoder, cpu, prompt)[1] (1,77,16), which the extractor "
             f"expands to the batch. Weights: unet.* (SatUNet, use_metadata False), vae.* (encoder.* and "
             f"quant_conv.* of AutoencoderKL), text_encoder.* (CLIPTextModel, 2 layers, hidden 16, gelu); "
             f"vocab.json/merges.txt: the tiny BPE of the tokenizer cases (pad '!', ftfy path). Seed {seed}. "
             f"Measured max |fp32-fp64| = {err:.3g}. {mg.HOW} {mg.lib_notes()}")
    return gc.write_case(out, "extract_tiny", "extract", cfg, weights, tensors, atol, mg.RTOL, notes,
                         files={"vocab.json": parts["vocab"], "merges.txt": parts["merges"]})


def cases(mg):
    return {"ddim_inversion_satdifuser": lambda out: case_ddim_inversion(mg, out),
            "extract_tiny": lambda out: case_extract(mg, out)}
