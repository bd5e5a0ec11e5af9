#!/usr/bin/python3
"""Test fixtures for the PyTorch checkpoint reader (issue 16): small files written by torch.save
(Debian python3-torch 1.13.1) plus the values a reader must find in them.

Usage:  /usr/bin/python3 weights_tools/make_torch_checkpoints.py [--only NAME] [--skip-hostile]
Needs:  Debian python3-torch 1.13.1, numpy, omegaconf; the original SatDiFuser code at
        $SATDIFUSER_REF/SatDiFuser (yurujaja/SatDiFuser @ 51148cb, default /work/ref/SatDiFuser)
        for the two run.py heads. Deterministic: fixed seeds, one thread, no timestamps (torch's
        zip writer writes none); the legacy format's storage keys (memory addresses) are renamed.
        Rerunning rewrites every file byte for byte the same (the script checks what it can:
        each file is loaded back and compared with its expected values).

tests/data/torch/  (X = each file below; X.expected.safetensors holds every tensor of X, values as
  a contiguous tensor, dtype kept, under its flattened name: dict keys joined with '.', list/tuple
  indices as numbers, e.g. state_dict.model.diffusion_model.out.2.bias,
  optimizer_state_dict.state.0.exp_avg; only plain dict/OrderedDict/list/tuple are walked, objects
  such as DictConfig, Namespace or Lightning's AttributeDict are not. X.expected.json: format,
  archive prefix, byteorder, the top-level entries (plain values given), the pickle's globals.)
  zip_f32.pt          OrderedDict state_dict (with its _metadata attribute) of conv + groupnorm + linear
  zip_dtypes.pt       one tensor per dtype F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL, special values
  zip_shared_views.pt views of one storage: offsets, transposed, step-2 slice, 0-d view, empty view;
                      an expanded (stride 0) tensor, a 0-d scalar, empty tensors
  zip_nested.pt       nested dicts/lists/tuples, int keys, nn.Parameter, requires_grad tensor, bytes,
                      ints/floats/strings/None/bools, a big int (LONG1)
  legacy.pt           torch < 1.6 format (_use_new_zipfile_serialization=False): f32 + f16 state dict
                      and a view sharing a storage
  legacy_views.pt     legacy format, transposed/offset/step views
  prefix_other.pt     zip whose archive prefix is 'renamed-model.v1/' (torch 1.13 names the prefix
                      after the file's stem when saving to a path; this file was then renamed)
  bigendian.pt        zip with a 'byteorder' record 'big' and every storage byte-swapped (as torch
                      >= 2.1 writes on a big-endian machine); torch 1.13 ignores the record, so the
                      check is our own reader in this script
  lightning.ckpt      PyTorch Lightning layout (epoch, global_step, pytorch-lightning_version,
                      state_dict with LDM names + model_ema, optimizer_states, lr_schedulers,
                      callbacks keyed by a class object and by a state-key string, hyper_parameters
                      as argparse.Namespace, datamodule_hyper_parameters as Lightning's AttributeDict,
                      a numpy float64 scalar). Lightning itself is not installed: two stand-in
                      modules give the real names pytorch_lightning.callbacks.model_checkpoint.
                      ModelCheckpoint and pytorch_lightning.utilities.parsing.AttributeDict
  runpy_head_cls.pth  exactly run.py's save_model() dict: epoch, global_step, config (OmegaConf
  runpy_head_seg.pth  DictConfig built by run.py's own load_config/combine_configs from
                      configs/eurosat_exp.yaml resp. chesa_exp.yaml), decoder_net (state_dict of
                      the original GW classifier resp. MoE UPerNet), optimizer_state_dict (Adam
                      after 4 steps), lr_scheduler (WarmupCosineDecayScheduler). X.note.json: the
                      config values the C importer needs and the tensor names.
  hostile/            made by make_torch_hostile.py (called from here), see hostile/README.md
tests/data/diffusionsat_tiny/: tests/data/tiny_pipeline in DiffusionSat's release layout with .bin
  weights (see its README.md; made by make_diffusionsat_tiny.py, called from here);
  tests/data/torch/diffusionsat_tiny_unet_metadata.expected.safetensors holds the SatUNet tensors
  that tiny_pipeline does not have.
"""
import argparse
import collections
import io
import json
import os
import pickle
import shutil
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from golden_common import load_safetensors, save_safetensors  # noqa: E402
from torch_pickle_tools import pickle_globals, read_zip_records, write_torch_zip  # noqa: E402

OUT = os.path.join(ROOT, "tests", "data", "torch")
DSAT = os.path.join(ROOT, "tests", "data", "diffusionsat_tiny")
TINY = os.path.join(ROOT, "tests", "data", "tiny_pipeline")
REF = os.environ.get("SATDIFUSER_REF", "/work/ref")


# ------------------------------------------------------------------ stand-ins for Lightning

def install_lightning_standins():
    """Modules named as Lightning's, so that pickles reference the real globals."""
    if "pytorch_lightning.callbacks.model_checkpoint" in sys.modules:
        return
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint",
             "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing"]
    for n in names:
        sys.modules[n] = types.ModuleType(n)

    class ModelCheckpoint:  # only ever used as a dict key (a class object), as Lightning 1.4 did
        pass

    class AttributeDict(dict):  # Lightning's: a dict whose keys are also attributes
        def __getattr__(self, k):
            try:
                return self[k]
            except KeyError as e:
                raise AttributeError(k) from e

    ModelCheckpoint.__module__ = "pytorch_lightning.callbacks.model_checkpoint"
    AttributeDict.__module__ = "pytorch_lightning.utilities.parsing"
    AttributeDict.__qualname__ = "AttributeDict"
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    sys.modules["pytorch_lightning.callbacks.model_checkpoint"].ModelCheckpoint = ModelCheckpoint
    sys.modules["pytorch_lightning.utilities.parsing"].AttributeDict = AttributeDict


# ------------------------------------------------------------------ saving

def save_zip(obj, path):
    """torch.save to memory (archive prefix 'archive/'), then to path."""
    import torch
    b = io.BytesIO()
    torch.save(obj, b)
    with open(path, "wb") as f:
        f.write(b.getvalue())


def _split_legacy(raw):
    """Offsets of the 5 pickles of the legacy format (magic, protocol, sys_info, object, storage
    keys); the storages follow the last one."""
    import pickletools
    f = io.BytesIO(raw)
    ends = []
    for _ in range(5):
        for _op in pickletools.genops(f):
            pass
        ends.append(f.tell())
    return ends


def save_legacy(obj, path):
    """torch.save(..., _use_new_zipfile_serialization=False), then made deterministic: the storage
    keys (decimal memory addresses, different every run, which also order the key list and the
    storages) renamed to 15-digit fake addresses in order of first use in the object pickle,
    rewriting only those BINUNICODE strings (memo indices and everything else kept), and the key
    list and the storages written in the new keys' sorted order, as torch does."""
    import pickletools
    import struct
    import torch
    b = io.BytesIO()
    torch.save(obj, b, _use_new_zipfile_serialization=False)
    raw = b.getvalue()
    ends = _split_legacy(raw)
    keys = pickle.loads(raw[ends[3]:ends[4]])
    types_ = _legacy_storage_types(raw[ends[2]:ends[3]])  # key -> storage class name, first-use order
    new = {k: str(140000000000000 + 64 * i) for i, k in enumerate(types_)}
    assert set(new) == set(keys)
    out = bytearray(raw[:ends[2]])
    seg = raw[ends[2]:ends[3]]
    pos_done = 0
    for op, arg, pos in pickletools.genops(seg):
        if op.name == "BINUNICODE" and arg in new:
            out += seg[pos_done:pos]
            e = new[arg].encode()
            out += b"X" + struct.pack("<I", len(e)) + e
            pos_done = pos + 5 + len(arg.encode())
    out += seg[pos_done:]
    out += pickle.dumps(sorted(new.values()), protocol=2)
    chunks, pos = {}, ends[4]
    for k in keys:  # int64 element count + data, in the original key order
        n = struct.unpack("<q", raw[pos:pos + 8])[0]
        size = 8 + n * np_itemsize(types_[k])
        chunks[new[k]] = raw[pos:pos + size]
        pos += size
    assert pos == len(raw)
    for k in sorted(chunks):
        out += chunks[k]
    with open(path, "wb") as f:
        f.write(bytes(out))


def np_itemsize(storage_name):
    import numpy as np
    return np.dtype(STORAGE_DTYPES[storage_name][1]).itemsize


def _legacy_storage_types(object_pickle):
    """key -> storage class name in order of first use, from the legacy object pickle."""
    found = {}

    class U(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch" and name.endswith("Storage"):
                return name
            return _Inert

        def persistent_load(self, pid):
            found.setdefault(pid[2], pid[1])
            return None

    U(io.BytesIO(object_pickle)).load()
    return found


class _Inert(dict):
    """Stands for any class while reading our own fixtures' pickles for their storage ids."""

    def __init__(self, *a, **k):
        pass

    def __setstate__(self, state):
        pass


# ------------------------------------------------------------------ reading back (independent of torch.load)

STORAGE_DTYPES = {"FloatStorage": ("F32", "f4"), "HalfStorage": ("F16", "f2"), "BFloat16Storage": ("BF16", "u2"),
                  "DoubleStorage": ("F64", "f8"), "LongStorage": ("I64", "i8"), "IntStorage": ("I32", "i4"),
                  "ShortStorage": ("I16", "i2"), "CharStorage": ("I8", "i1"), "ByteStorage": ("U8", "u1"),
                  "BoolStorage": ("BOOL", "?")}


def zip_storage_types(raw):
    """key -> storage class name, from the persistent ids of a zip checkpoint's data.pkl (an
    unpickler that builds nothing: storages are recorded, tensors become placeholders)."""
    recs = dict(read_zip_records(raw))
    prefix = next(iter(recs)).split("/")[0]
    found = {}

    class U(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch" and name.endswith("Storage"):
                return name
            return _Inert

        def persistent_load(self, pid):
            found[pid[2]] = pid[1]
            return None

    U(io.BytesIO(recs[prefix + "/data.pkl"])).load()
    return prefix, recs, found


def make_bigendian(obj, path):
    """A zip checkpoint as torch >= 2.1 writes it on a big-endian machine: records data.pkl,
    byteorder ('big'), data/<key> (keys in string order, as torch sorts them), version; every
    storage's elements byte-swapped."""
    import numpy as np
    b = io.BytesIO()
    import torch
    torch.save(obj, b)
    prefix, recs, types_ = zip_storage_types(b.getvalue())
    out = [(prefix + "/data.pkl", recs[prefix + "/data.pkl"]), (prefix + "/byteorder", b"big")]
    for key in sorted(types_):
        data = recs[f"{prefix}/data/{key}"]
        code = STORAGE_DTYPES[types_[key]][1]
        swapped = np.frombuffer(data, dtype="<" + code).astype(">" + code).tobytes()
        out.append((f"{prefix}/data/{key}", swapped))
    out.append((prefix + "/version", recs[prefix + "/version"]))
    with open(path, "wb") as f:
        f.write(write_torch_zip(out))


def load_bigendian(path):
    """torch.load with the storages byte-swapped back (torch 1.13 ignores 'byteorder'):
    the independent check of bigendian.pt."""
    import numpy as np
    import torch
    raw = open(path, "rb").read()
    prefix, recs, types_ = zip_storage_types(raw)
    assert recs[prefix + "/byteorder"] == b"big"
    fixed = []
    for name, data in recs.items():
        if name.startswith(prefix + "/data/"):
            code = STORAGE_DTYPES[types_[name.rsplit("/", 1)[1]]][1]
            data = np.frombuffer(data, dtype=">" + code).astype("<" + code).tobytes()
        if not name.endswith("/byteorder"):
            fixed.append((name, data))
    return torch.load(io.BytesIO(write_torch_zip(fixed)))


# ------------------------------------------------------------------ expected values

def flatten(obj, prefix="", out=None):
    """name -> tensor for every tensor reachable through plain dict/OrderedDict/list/tuple."""
    import torch
    if out is None:
        out = collections.OrderedDict()
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif type(obj) in (dict, collections.OrderedDict):
        for k, v in obj.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    return out


def dtype_name(t):
    import torch
    return {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
            torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
            torch.bool: "BOOL"}[t.dtype]


def describe(v):
    import torch
    if isinstance(v, torch.Tensor):
        return {"type": "tensor", "dtype": dtype_name(v), "shape": list(v.shape)}
    if type(v) is bytes:
        return {"type": "bytes", "hex": v.hex()}
    if v is None or type(v) in (bool, int, str):
        return {"type": type(v).__name__ if v is not None else "None", "value": v}
    if type(v) is float:
        return {"type": "float", "value": v}
    if type(v) in (dict, collections.OrderedDict, list, tuple):
        return {"type": type(v).__name__, "len": len(v)}
    return {"type": "object", "class": f"{type(v).__module__}.{type(v).__qualname__}"}


def file_facts(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"PK":
        recs = read_zip_records(raw)
        prefix = recs[0][0].split("/")[0]
        rd = dict(recs)
        bo = rd.get(prefix + "/byteorder", b"(none: little)").decode()
        names = [n for n, _ in recs]
        ops = set()
        globs = sorted(map(list, pickle_globals(rd[prefix + "/data.pkl"], ops)))
        return {"format": "zip", "archive_prefix": prefix + "/", "byteorder": bo, "record_count": len(recs),
                "records": names if len(names) <= 40 else names[:3] + ["..."] + names[-2:],
                "pickle_opcodes": sorted(ops), "pickle_globals": globs}
    ends = _split_legacy(raw)
    ops = set()
    globs = sorted(map(list, pickle_globals(raw[:ends[4]], ops)))
    return {"format": "legacy", "pickle_opcodes": sorted(ops), "pickle_globals": globs}


def write_expected(path, obj, note):
    flat = flatten(obj)
    tensors = {k: v.detach().contiguous() for k, v in flat.items()}
    save_safetensors(tensors, path + ".expected.safetensors")
    facts = file_facts(path)
    top = {str(k): describe(v) for k, v in obj.items()} if isinstance(obj, dict) else {}
    info = {"file": os.path.basename(path), **{k: v for k, v in facts.items() if k != "pickle_globals"},
            "top_level_type": f"{type(obj).__module__}.{type(obj).__qualname__}", "top_level": top,
            "tensor_count": len(tensors), "note": note, "pickle_globals": facts["pickle_globals"]}
    with open(path + ".expected.json", "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    return facts["pickle_globals"]


def tensor_bytes(t):
    import torch
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def verify(path, loaded):
    """The loaded object's tensors equal the expected file bit for bit (NaN payloads included)."""
    want = load_safetensors(path + ".expected.safetensors")
    got = flatten(loaded)
    assert set(got) == set(want), f"{path}: names differ: {sorted(set(got) ^ set(want))[:5]}"
    for k, w in want.items():
        g = got[k]
        assert g.dtype == w.dtype and tuple(g.shape) == tuple(w.shape), f"{path}: {k} dtype/shape"
        assert tensor_bytes(g) == tensor_bytes(w), f"{path}: {k} values"
    info = json.load(open(path + ".expected.json"))
    for k, d in info["top_level"].items():
        if "value" in d:
            assert loaded[k] == d["value"], f"{path}: top-level {k}"
    return len(want)


# ------------------------------------------------------------------ the fixtures

def fx_zip_f32():
    import torch
    torch.manual_seed(1601)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.norm = torch.nn.GroupNorm(2, 4)
            self.fc = torch.nn.Linear(4, 5)

    m = Tiny()
    with torch.no_grad():  # norm away from 1/0 so a swapped weight/bias shows
        m.norm.weight.uniform_(0.5, 1.5)
        m.norm.bias.uniform_(-0.5, 0.5)
    sd = m.state_dict()
    return sd, "state_dict() of Conv2d(3,4,3)+GroupNorm(2,4)+Linear(4,5): an OrderedDict whose _metadata " \
               "attribute ({'': {'version': 1}, 'conv': ...}) is pickled as BUILD state after its SETITEMS"


def fx_zip_dtypes():
    import torch
    f16 = torch.tensor([1.0, -2.5, float("inf"), float("-inf"), float("nan"), 5.96e-8, 6.1e-5, 65504.0, -0.0],
                       dtype=torch.float16)  # 5.96e-8: smallest subnormal, 6.1e-5 ~ smallest normal
    bf16 = torch.tensor([-0.0, 1.0, -3.0e38, 1.0e-38, float("inf"), float("nan"), 3.14159], dtype=torch.bfloat16)
    d = collections.OrderedDict()
    d["f32"] = torch.tensor([[1.5, -0.0, float("inf")], [float("nan"), 1e-45, -3.4028235e38]], dtype=torch.float32)
    d["f16"] = f16
    d["bf16"] = bf16
    d["f64"] = torch.tensor([1.0 / 3.0, -1e308, 5e-324, float("-inf")], dtype=torch.float64)
    d["i64"] = torch.tensor([-2**63, 2**63 - 1, 0, -1, 2**40], dtype=torch.int64)
    d["i32"] = torch.tensor([-2**31, 2**31 - 1, 7], dtype=torch.int32)
    d["i16"] = torch.tensor([[-32768, 32767], [1, -2]], dtype=torch.int16)
    d["i8"] = torch.tensor([-128, 127, 0], dtype=torch.int8)
    d["u8"] = torch.tensor([0, 255, 128, 1], dtype=torch.uint8)
    d["bool"] = torch.tensor([True, False, True], dtype=torch.bool)
    return d, "one tensor per dtype: f16 inf/nan/subnormal 5.96e-8/65504/-0; bf16 -0/-3e38/1e-38 (subnormal)/inf/nan; " \
              "f32 nan/1e-45 (subnormal)/-FLT_MAX; f64 5e-324; int64 extremes; storages HalfStorage, BFloat16Storage, " \
              "DoubleStorage, LongStorage, IntStorage, ShortStorage, CharStorage, ByteStorage, BoolStorage"


def shared_views():
    import torch
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.5 - 3.0
    flat = base.view(-1)
    d = collections.OrderedDict()
    d["base"] = base
    d["row2"] = base[2]                       # offset 12, contiguous
    d["tail"] = flat[10:17]                   # offset 10
    d["transposed"] = base.t()                # size (6,4) stride (1,6)
    d["step2"] = flat[1::2]                   # offset 1, stride 2
    d["col3"] = base[:, 3]                    # offset 3, stride 6
    d["block"] = base[1:3, 2:5]               # offset 8, stride (6,1): non-contiguous
    d["elem0d"] = base[2, 3]                  # 0-d view, offset 15
    d["empty_view"] = base[:, 6:]             # (4,0) view, offset 6
    d["expanded"] = torch.tensor([1.0, 2.0, 3.0]).expand(4, 3)  # stride (0,1) on a 3-element storage
    d["scalar"] = torch.tensor(7.25)          # 0-d, own storage
    d["empty"] = torch.zeros(0)
    d["empty3d"] = torch.zeros(2, 0, 3, dtype=torch.float16)
    return d


def fx_zip_shared_views():
    return shared_views(), "base (4,6) f32 storage shared by row2 (offset 12), tail (offset 10), transposed " \
                           "(stride (1,6)), step2 (offset 1, stride 2), col3 (stride 6), block (offset 8, stride (6,1)), " \
                           "elem0d (0-d, offset 15), empty_view ((4,0), offset 6): one data record; expanded has stride (0,1)"


def fx_zip_nested():
    import torch
    g = torch.Generator().manual_seed(1604)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    param = torch.nn.Parameter(r(2, 2))
    grad_t = r(3).requires_grad_(True)
    d = {
        "model": {"enc": {"w": r(2, 3), "layers": [r(2), r(1, 2), {"b": r(3)}]},
                  "pair": (r(2), 5, "x"), "int_keys": {0: r(1), 7: r(2)}},
        "param": param,                     # torch._utils._rebuild_parameter
        "grad_tensor": grad_t,              # _rebuild_tensor_v2 with requires_grad True
        "list_of_tuples": [(1, r(2)), (2, None)],
        "step": 12, "lr": 0.001, "neg": -3, "big": 2**40, "name": "tiny ünï", "flag": True, "off": False,
        "nothing": None, "raw_bytes": b"abc\x00\xff", "empty_dict": {}, "empty_list": [], "tuple_plain": (1, 2.5, "z"),
    }
    return d, "nested dict/list/tuple with tensors at every level, int dict keys (names model.int_keys.0 / .7), " \
              "nn.Parameter, a requires_grad tensor, bytes (protocol 2 pickles them as _codecs.encode(str, 'latin1'))"


def fx_legacy():
    import torch
    torch.manual_seed(1605)
    conv = torch.nn.Conv2d(2, 3, 1)
    emb = torch.nn.Embedding(5, 4).half()
    sd = collections.OrderedDict()
    for k, v in conv.state_dict().items():
        sd["conv." + k] = v
    for k, v in emb.state_dict().items():
        sd["emb." + k] = v
    sd["emb.row3"] = sd["emb.weight"][3]      # shares emb.weight's HalfStorage at offset 12
    return sd, "legacy format: magic/protocol/sys_info pickles, the object pickle (persistent ids " \
               "('storage', type, key, 'cpu', numel, None)), the sorted key list, then per storage int64 numel + raw data; " \
               "emb.row3 views emb.weight's HalfStorage at offset 12; keys renamed to fixed 15-digit strings"


def fx_legacy_views():
    d = shared_views()
    for k in ("empty3d",):
        del d[k]
    return d, "legacy format of the zip_shared_views views (minus empty3d): one FloatStorage for base and its views"


def fx_prefix_other(path):
    import tempfile
    import torch
    torch.manual_seed(1607)
    lin = torch.nn.Linear(3, 2)
    sd = lin.state_dict()
    d = tempfile.mkdtemp(prefix="torchfx_")
    tmp = os.path.join(d, "renamed-model.v1.pt")
    torch.save(sd, tmp)  # to a path: torch 1.13 uses the file's stem as the archive prefix
    shutil.copyfile(tmp, path)
    shutil.rmtree(d)
    return sd, "saved by torch.save to a path named renamed-model.v1.pt (prefix = stem 'renamed-model.v1/'), then renamed"


def fx_bigendian():
    d = collections.OrderedDict()
    dt = fx_zip_dtypes()[0]
    for k in ("f32", "f16", "bf16", "f64", "i64", "i32", "i16", "u8", "bool"):
        d[k] = dt[k]
    d["t_view"] = d["f32"].t()
    return d, "records data.pkl, byteorder ('big'), data/<key>, version; storages byte-swapped per element size"


def fx_lightning():
    import argparse as ap
    import numpy as np
    import torch
    install_lightning_standins()
    from pytorch_lightning.callbacks.model_checkpoint import ModelCheckpoint
    from pytorch_lightning.utilities.parsing import AttributeDict
    g = torch.Generator().manual_seed(1609)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    sd = collections.OrderedDict()
    sd["betas"] = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64).pow(2).float()
    sd["alphas_cumprod"] = torch.cumprod(1.0 - sd["betas"], 0)
    for n, s in (("input_blocks.0.0.weight", (4, 4, 3, 3)), ("input_blocks.0.0.bias", (4,)),
                 ("time_embed.0.weight", (8, 4)), ("out.2.bias", (4,))):
        sd["model.diffusion_model." + n] = r(*s)
    sd["model_ema.decay"] = torch.tensor(0.9999)
    sd["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int32)
    sd["model_ema.diffusion_modelinput_blocks00weight"] = r(4, 4, 3, 3)
    sd["model_ema.diffusion_modelout2bias"] = r(4)
    sd["first_stage_model.encoder.conv_in.weight"] = r(2, 3, 3, 3)
    sd["cond_stage_model.model.positional_embedding"] = r(3, 2).half()
    params = [torch.nn.Parameter(r(2, 2)), torch.nn.Parameter(r(2))]
    opt = torch.optim.AdamW(params, lr=1e-4)
    for _ in range(2):
        opt.zero_grad()
        (params[0].sum() ** 2 + params[1].pow(3).sum()).backward()
        opt.step()

    class LambdaWarmUpCosine:  # a callable object: LambdaLR saves its __dict__
        def __init__(self):
            self.lr_warm_up_steps, self.lr_min, self.lr_max, self.verbosity_interval = [10000], [1.0], [1.0], 0

        def __call__(self, n):
            return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=LambdaWarmUpCosine())
    state_key = "ModelCheckpoint{'monitor': 'val/loss_simple_ema', 'mode': 'min', 'every_n_train_steps': 0, " \
                "'every_n_epochs': 1, 'train_time_interval': None, 'save_on_train_epoch_end': True}"
    d = {
        "epoch": 5, "global_step": 1234, "pytorch-lightning_version": "1.4.2",
        "state_dict": sd,
        "callbacks": {
            ModelCheckpoint: {"monitor": None, "best_model_score": None, "best_model_path": "", "current_score": None,
                              "dirpath": "logs/checkpoints", "best_k_models": {}, "kth_best_model_path": ""},
            state_key: {"monitor": "val/loss_simple_ema", "best_model_score": torch.tensor(0.125),
                        "kth_value": np.float64(0.25), "dirpath": "logs/checkpoints"},
        },
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [sched.state_dict()],
        "hparams_name": "kwargs",
        "hyper_parameters": ap.Namespace(base_learning_rate=1e-4, linear_start=0.00085, timesteps=1000,
                                          first_stage_key="jpg", use_ema=True),
        "datamodule_hyper_parameters": AttributeDict(batch_size=4, num_workers=2, wrap=False),
    }
    return d, "Lightning layout; callbacks keyed by the ModelCheckpoint class object (GLOBAL used as a dict key, " \
              "Lightning 1.4) and by a state-key string (>= 1.5; its tensor: callbacks.<that key>.best_model_score); " \
              "kth_value is a numpy float64 (numpy.core.multiarray.scalar(numpy.dtype('f8'), _codecs.encode(...))); " \
              "hyper_parameters an argparse.Namespace (NEWOBJ + BUILD), datamodule_hyper_parameters a dict subclass " \
              "(NEWOBJ + SETITEMS); optimizer_states[0].state.<i>.step are 0-d f32 tensors (torch >= 1.12)"


# ------------------------------------------------------------------ main

def _runpy(kind, path):
    from make_runpy_heads import fx_runpy_head
    return fx_runpy_head(kind, path)


FIXTURES = [  # (file, builder, how it is saved)
    ("zip_f32.pt", fx_zip_f32, "zip"),
    ("zip_dtypes.pt", fx_zip_dtypes, "zip"),
    ("zip_shared_views.pt", fx_zip_shared_views, "zip"),
    ("zip_nested.pt", fx_zip_nested, "zip"),
    ("legacy.pt", fx_legacy, "legacy"),
    ("legacy_views.pt", fx_legacy_views, "legacy"),
    ("prefix_other.pt", fx_prefix_other, "self"),
    ("bigendian.pt", fx_bigendian, "bigendian"),
    ("lightning.ckpt", fx_lightning, "zip"),
    ("runpy_head_cls.pth", lambda p: _runpy("cls", p), "self"),
    ("runpy_head_seg.pth", lambda p: _runpy("seg", p), "self"),
]


def make_fixture(fname, builder, how):
    import torch
    path = os.path.join(OUT, fname)
    obj, note = builder(path) if how == "self" else builder()
    if how == "zip":
        save_zip(obj, path)
    elif how == "legacy":
        save_legacy(obj, path)
    elif how == "bigendian":
        make_bigendian(obj, path)
    write_expected(path, obj, note)
    loaded = load_bigendian(path) if how == "bigendian" else torch.load(path)
    n = verify(path, loaded)
    if how == "zip":  # our zip writer rebuilds torch's archive byte for byte
        raw = open(path, "rb").read()
        assert write_torch_zip(read_zip_records(raw)) == raw, f"{fname}: zip writer differs from torch's"
    print(f"  {fname}: {os.path.getsize(path)} bytes, {n} tensors, verified", flush=True)
    return dict(file_facts(path), note=note)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=None, help="substring of the fixture names to make")
    ap.add_argument("--skip-hostile", action="store_true")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    install_lightning_standins()
    os.makedirs(OUT, exist_ok=True)
    table = {}
    for fname, builder, how in FIXTURES:
        if args.only and args.only not in fname:
            continue
        table[f"tests/data/torch/{fname}"] = make_fixture(fname, builder, how)
    if not args.only or "diffusionsat" in args.only:
        print("  diffusionsat_tiny:", flush=True)
        from make_diffusionsat_tiny import make_diffusionsat_tiny
        table.update(make_diffusionsat_tiny())
    if not args.skip_hostile and (not args.only or "hostile" in args.only):
        import make_torch_hostile
        make_torch_hostile.main_hostile(os.path.join(OUT, "hostile"))
    if not args.only:
        write_readme(table)
    print("\npickle globals (module, name) per file:")
    for k, v in table.items():
        print(f"  {k}: " + ", ".join(f"{m}.{n}" for m, n in v["pickle_globals"]))
    union = sorted({tuple(x) for v in table.values() for x in v["pickle_globals"]})
    print("\nunion of all globals:\n  " + "\n  ".join(f"{m} {n}" for m, n in union))
    ops = sorted({x for v in table.values() for x in v["pickle_opcodes"]})
    print("\nunion of all opcodes:\n  " + " ".join(ops))


def write_readme(table):
    """tests/data/torch/README.md: the files, their globals and opcodes, the format facts."""
    lines = [README_HEAD]
    for k, v in table.items():
        name = k.split("tests/data/")[1]
        where = v["format"] + (f", prefix {v['archive_prefix']}" if v["format"] == "zip" else "")
        lines.append(f"### {name} ({where}, {os.path.getsize(os.path.join(ROOT, k))} bytes)\n")
        if v.get("note"):
            lines.append(v["note"] + "\n")
        lines.append("globals: " + ", ".join(f"`{m}.{n}`" for m, n in v["pickle_globals"]) + "  ")
        lines.append("opcodes: " + " ".join(v["pickle_opcodes"]) + "\n")
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(lines))


README_HEAD = """# PyTorch checkpoint fixtures (issue 16)

Made by weights_tools/make_torch_checkpoints.py with Debian python3-torch 1.13.1 (rerun:
`/usr/bin/python3 weights_tools/make_torch_checkpoints.py`; deterministic, checks itself). For each
file X: X.expected.safetensors = every tensor of X, contiguous, dtype kept, under its flattened
name (dict keys joined with '.', list/tuple indices as numbers; objects such as DictConfig,
Namespace, AttributeDict are not walked); X.expected.json = format, archive prefix, byteorder,
records, the top-level entries (plain values given), the pickle's opcodes and globals.
runpy_head_*.note.json: what a head importer needs. hostile/README.md: files that must be refused.
../diffusionsat_tiny/README.md: the DiffusionSat release layout.

## Format facts (torch 1.13.1, checked on these files)

- zip: every entry STORED; general flags 0x0808 (data descriptor, UTF-8), local header CRC and sizes
  0 (the sizes are in the central directory and in a 16-byte PK\\7\\8 descriptor after the data; an
  empty entry has flags 0x0800 and no descriptor); time/date 0; a local extra field 'FB' of 'Z'
  bytes pads every entry's data to a multiple of 64 from the file start; a ZIP64 end record
  (PK\\6\\6) and locator (PK\\6\\7) always precede the plain end record, even in a 1 KB file.
  weights_tools/torch_pickle_tools.write_torch_zip rebuilds torch's archives byte for byte.
- records: <prefix>/data.pkl, <prefix>/data/<key> (keys "0", "1", ... in first-pickled order, written
  in string order: data/10 before data/2), <prefix>/version ("3\\n"); torch >= 2.1 adds
  <prefix>/byteorder ("little" or "big"; bigendian.pt). The prefix is "archive" when saving to a
  file object, and the file's stem when torch 1.13 saves to a path (the .bin files of
  ../diffusionsat_tiny: "diffusion_pytorch_model/", "pytorch_model-00001-of-00002/"; prefix_other.pt).
- pickle protocol 2 (torch.save's default): GLOBAL, never STACK_GLOBAL/FRAME/MEMOIZE (protocol 4
  files from other writers do use them: see hostile/*_sg*); BINPUT/LONG_BINPUT memo; BINFLOAT is a
  big-endian double; ints BININT1/BININT2/BININT/LONG1; bytes are `_codecs.encode(str, 'latin1')`;
  Python ints in types appear as `__builtin__.long`, builtins as `__builtin__.*`.
- a tensor: REDUCE of `torch._utils._rebuild_tensor_v2` on (storage, storage_offset, size tuple,
  stride tuple, requires_grad bool, OrderedDict() backward hooks) - 6 arguments in 1.13 (newer torch
  may add a 7th, metadata); the storage is BINPERSID of the tuple ('storage', GLOBAL torch.<T>Storage,
  key str, location 'cpu', numel in elements of T) - the legacy format adds a 6th element
  view_metadata, always None since 1.x. nn.Parameter: `torch._utils._rebuild_parameter(tensor,
  requires_grad, OrderedDict())`. The GLOBAL of _rebuild_tensor_v2, the storage class and the
  OrderedDict class are memoized once and re-read with BINGET.
- a state_dict is an OrderedDict: GLOBAL collections.OrderedDict, EMPTY_TUPLE, REDUCE, SETITEMS of the
  tensors, then BUILD with {'_metadata': OrderedDict({'': {'version': 1}, 'conv': {...}, ...})}.
- legacy format: pickles of the magic number 0x1950a86a20f9469cfc6c (LONG1), protocol 1001, sys_info
  {protocol_version, little_endian, type_sizes {short 2, int 4, long 8}}, the object, the sorted list
  of storage keys (decimal memory addresses in real files; renamed to fixed 15-digit strings here),
  then per key: int64 little-endian element count + the raw data, no alignment.
- OmegaConf DictConfig (runpy_head_*.pth `config`): NEWOBJ of omegaconf.dictconfig.DictConfig on an
  EMPTY_TUPLE, then BUILD with the state dict {'_metadata': ContainerMetadata (NEWOBJ + BUILD
  {ref_type: typing.Any, object_type: __builtin__.dict, optional, key, flags {}, flags_root,
  resolver_cache: collections.defaultdict(__builtin__.dict) via REDUCE, key_type: typing.Any,
  element_type: typing.Any}), '_parent': None, '_content': {key: node}}; nodes are
  omegaconf.nodes.AnyNode (state {'_metadata': omegaconf.base.Metadata, '_parent': <the DictConfig,
  by BINGET before its BUILD finished>, '_val': value}), ListConfig (object_type __builtin__.list,
  '_content' a list of AnyNodes) and nested DictConfigs. So memo back-references (cycles through
  objects) are normal there; a value is found as config._content[key]._val.
- Lightning (lightning.ckpt): dict keyed by a class object (GLOBAL ModelCheckpoint used as a dict key),
  argparse.Namespace = NEWOBJ + BUILD(dict), AttributeDict (a dict subclass) = NEWOBJ + SETITEMS,
  numpy float64 = numpy.core.multiarray.scalar(numpy.dtype('f8', False, True) + BUILD (3, '<', None,
  None, None, -1, -1, 0), _codecs.encode(8 bytes as latin-1 str, 'latin1')).
- optimizer state: Adam/AdamW `state.<param index>.{step, exp_avg, exp_avg_sq}`, step a 0-d float32
  tensor (torch >= 1.12; a Python number before); param_groups plain dicts.

## Files
"""


if __name__ == "__main__":
    main()
