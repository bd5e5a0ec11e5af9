"""Shared helpers of the golden-case generator (weights_tools/make_golden.py).

- setup_env(): makes diffusers 0.17.0 / transformers 4.31.0 importable on Debian's
  python3-torch 1.13.1 without pip: a pure-python `safetensors` stand-in (the real
  one is a Rust extension that Debian does not package), package metadata for the
  version checks of transformers, deterministic single-thread torch, and the
  torch 1.13 baddbmm(beta=0) fix.
- save_safetensors(): our own writer of the safetensors format (8-byte little-endian
  header length, JSON header, raw little-endian data), 8-byte aligned like the real
  library.
- perturb_(): moves every parameter away from its init so that no bias is 0 and
  no norm weight is 1.
- write_case(): one case folder (case.json, weights.safetensors, tensors.safetensors).
"""
import importlib.machinery
import json
import math
import os
import struct
import sys
import tempfile
import types

REF = os.environ.get("SATDIFUSER_REF", "/work/ref")

_DTYPE_NAMES = None


def _dtype_names():
    import torch
    return {
        torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
        torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
        torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
    }


def save_safetensors(tensors, path, metadata=None):
    """Writes a dict name -> torch.Tensor as a .safetensors file (sorted names),
    one tensor at a time (full-size cases hold GBs)."""
    import torch
    names = _dtype_names()
    header = {}
    offset = 0
    keys = sorted(tensors)
    for key in keys:
        t = tensors[key]
        n = t.numel() * t.element_size()
        header[key] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    assert sys.byteorder == "little"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for key in keys:
            t = tensors[key].detach().contiguous().cpu()
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            f.write(t.numpy().tobytes())


def load_safetensors(path):
    """Reads a .safetensors file into a dict name -> torch.Tensor (copies)."""
    import numpy as np
    import torch
    inv = {v: k for k, v in _dtype_names().items()}
    np_types = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4",
                "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?", "BF16": "<i2"}
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw[base + a:base + b], dtype=np_types[info["dtype"]]).copy()
        t = torch.from_numpy(arr).reshape(info["shape"])
        if info["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        else:
            t = t.to(inv[info["dtype"]])
        out[key] = t
    return out


def _install_safetensors_standin():
    """transformers 4.31 imports safetensors.torch at module level; give it a
    pure-python module with the functions it names (only used if weights were
    loaded from or saved to .safetensors files, which the generator never does
    through transformers/diffusers)."""
    if "safetensors" in sys.modules:
        return
    pkg = types.ModuleType("safetensors")
    pkg.__spec__ = importlib.machinery.ModuleSpec("safetensors", None, is_package=True)
    pkg.__path__ = []
    st_torch = types.ModuleType("safetensors.torch")
    st_torch.__spec__ = importlib.machinery.ModuleSpec("safetensors.torch", None)

    def storage_ptr(tensor):
        return tensor.storage().data_ptr()

    def storage_size(tensor):
        return tensor.storage().size() * tensor.element_size()

    def load_file(filename, device="cpu"):
        return load_safetensors(filename)

    def save_file(tensors, filename, metadata=None):
        save_safetensors(tensors, filename, metadata)

    def safe_open(*args, **kwargs):
        raise NotImplementedError("safe_open: stand-in safetensors module (golden generator)")

    st_torch.storage_ptr = storage_ptr
    st_torch.storage_size = storage_size
    st_torch.load_file = load_file
    st_torch.save_file = save_file
    st_torch.safe_open = safe_open
    pkg.safe_open = safe_open
    pkg.torch = st_torch
    pkg.__version__ = "0.3.1"
    sys.modules["safetensors"] = pkg
    sys.modules["safetensors.torch"] = st_torch


def _install_fake_metadata():
    """transformers checks installed versions through importlib.metadata; give the
    packages we supply from source trees (huggingface_hub 0.16.4) or as stand-ins
    (safetensors) a METADATA record."""
    import importlib.metadata as md
    need = []
    for name, version in (("huggingface_hub", "0.16.4"), ("safetensors", "0.3.1")):
        try:
            md.version(name.replace("_", "-"))
        except md.PackageNotFoundError:
            need.append((name, version))
    if not need:
        return
    d = tempfile.mkdtemp(prefix="golden_meta_")
    for name, version in need:
        info = os.path.join(d, f"{name}-{version}.dist-info")
        os.makedirs(info)
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n")
    sys.path.append(d)


def _patch_baddbmm():
    """torch 1.13 CPU: baddbmm(input, b1, b2, beta=0) is not reliable: diffusers
    0.17 passes torch.empty as input, and even with a zero input the result now
    and then comes out NaN (seen in float64 on (8,4,4) batches: the small-matrix
    path seems to read uninitialised memory, 0*NaN = NaN). Newer torch defines
    beta=0 as ignoring input: compute alpha * bmm(b1, b2) then."""
    import torch
    if getattr(torch.baddbmm, "_golden_patched", False):
        return
    orig = torch.baddbmm

    def baddbmm(input, batch1, batch2, *, beta=1, alpha=1, out=None):
        if beta == 0 and out is None:
            r = torch.bmm(batch1, batch2)
            return r if alpha == 1 else r * alpha
        if out is not None:
            return orig(input, batch1, batch2, beta=beta, alpha=alpha, out=out)
        return orig(input, batch1, batch2, beta=beta, alpha=alpha)

    baddbmm._golden_patched = True
    torch.baddbmm = baddbmm


def setup_env():
    for sub in ("diffusers/src", "transformers/src", "hfhub/src", "ftfy", "SatDiFuser"):
        p = os.path.join(REF, sub)
        if os.path.isdir(p) and p not in sys.path:
            sys.path.append(p)
    _install_fake_metadata()
    _install_safetensors_standin()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DIFFUSERS_OFFLINE", "1")
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    _patch_baddbmm()
    _patch_added_token()


def _patch_added_token():
    """Without the `tokenizers` package (not in Debian), transformers 4.31 uses
    a dataclass stand-in for AddedToken whose str() is its repr; the real
    tokenizers.AddedToken prints its content, and from_pretrained relies on that
    for special tokens given as dicts in tokenizer_config.json."""
    from transformers import tokenization_utils_base as tub
    if not tub.is_tokenizers_available():
        tub.AddedToken.__str__ = lambda self: self.content


def versions():
    import numpy
    import torch
    import diffusers
    import transformers
    try:
        import ftfy
        fv = getattr(ftfy, "__version__", "?")
    except ImportError:
        fv = "absent"
    return (f"torch {torch.__version__} (Debian python3-torch), python {sys.version.split()[0]}, "
            f"numpy {numpy.__version__}, diffusers {diffusers.__version__}, "
            f"transformers {transformers.__version__}, ftfy {fv}, CPU, 1 thread")


# ---------------------------------------------------------------- parameters

def perturb_(model, seed, emb_std=None):
    """Moves every parameter away from its init, deterministically:
    norm weights 1+N(0,0.1), norm biases N(0,0.1); conv/linear weights
    += N(0,1)*0.5/sqrt(fan_in) (about the init scale, activations stay O(1)),
    their biases += N(0,0.1); embeddings += N(0,emb_std or 0.5*std(init))."""
    import torch
    g = torch.Generator().manual_seed(seed)
    norm_types = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d)
    done = set()
    with torch.no_grad():
        for mname, m in model.named_modules():
            for pname, p in m.named_parameters(recurse=False):
                full = f"{mname}.{pname}" if mname else pname
                if full in done:
                    continue
                done.add(full)
                noise = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype)
                if isinstance(m, norm_types):
                    if pname == "weight":
                        p.copy_(1.0 + 0.1 * noise)
                    else:
                        p.copy_(0.1 * noise)
                elif isinstance(m, torch.nn.Embedding):
                    s = emb_std if emb_std is not None else 0.5 * float(p.std())
                    p.add_(s * noise)
                elif pname == "bias":
                    p.add_(0.1 * noise)
                elif p.dim() >= 2:
                    fan_in = p[0].numel()
                    p.add_(noise * (0.5 / math.sqrt(fan_in)))
                else:
                    p.add_(0.1 * noise)


def tolerance(err):
    """atol = 20x the measured fp32-vs-fp64 error, rounded up to 1 significant
    digit, at least 1e-5."""
    a = max(20.0 * err, 1e-5)
    e = math.floor(math.log10(a))
    m = math.ceil(a / 10 ** e - 1e-9)
    if m >= 10:
        m, e = 1, e + 1
    return float(f"{m}e{e}")


def max_err(a, b):
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def jsonable(x):
    """Config values as config.json holds them (tuples -> lists)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
        return str(x)
    return x


def diffusers_config(model, class_name=None):
    cfg = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    out = {"_class_name": class_name or type(model).__name__, "_diffusers_version": "0.17.0"}
    out.update(cfg)
    return jsonable(out)


def write_case(out_dir, name, module, config, weights, tensors, atol, rtol, notes, files=None):
    """Writes out_dir/name/{case.json, weights.safetensors, tensors.safetensors}
    plus extra text files (files: name -> str). Returns the folder size in bytes."""
    import torch
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    for k, v in tensors.items():
        if v.dtype.is_floating_point and not torch.isfinite(v).all():
            raise RuntimeError(f"{name}: tensor {k} has non-finite values")
    case = {"module": module, "config": jsonable(config), "rtol": rtol, "atol": atol, "notes": notes}
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f, indent=2, ensure_ascii=False)
        f.write("\n")
    save_safetensors(weights, os.path.join(d, "weights.safetensors"))
    save_safetensors(tensors, os.path.join(d, "tensors.safetensors"))
    for fname, text in (files or {}).items():
        with open(os.path.join(d, fname), "w", encoding="utf-8") as f:
            f.write(text)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"  wrote {d}  ({size / 1024:.0f} KiB, atol {atol:g}, rtol {rtol:g})", flush=True)
    return size


class Capture:
    """Forward hooks storing the output of the named sub-modules
    (`capture.<path>` tensors). Use as a context manager."""

    def __init__(self, model, paths, suffix=""):
        self.model, self.paths, self.suffix = model, list(paths), suffix
        self.out, self.handles = {}, []

    def __enter__(self):
        mods = dict(self.model.named_modules())
        for p in self.paths:
            def hook(mod, inp, output, p=p):
                self.out[p] = output.detach().clone()
            self.handles.append(mods[p].register_forward_hook(hook))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False
