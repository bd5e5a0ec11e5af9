#!/usr/bin/python3
"""Hostile PyTorch checkpoints for the reader of issue 16: tests/data/torch/hostile/, every byte
written here (pickles by hand with torch_pickle_tools.Pk, zips with its torch-layout writer).
Each must be refused with a message naming the problem, exit 1 or 2, nothing executed, nothing
written; the two control files (control_ok.pt, control_ok.legacy.pt) are built by the same code
paths and must load, so a refusal is not an accident of the builders. The list with the reasons is
written to hostile/README.md.

Run through weights_tools/make_torch_checkpoints.py, or alone:
    /usr/bin/python3 weights_tools/make_torch_hostile.py
Code-executing payloads only ever touch /tmp/satdifuser_hostile_executed (or open about:blank),
so that a test can check that the file does not appear. The check made here never runs them:
torch.load(weights_only=True) (torch 1.13's restricted unpickler) and a find_class that raises.
"""
import io
import os
import pickle
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_pickle_tools import Pk, write_torch_zip  # noqa: E402

MARKER = "/tmp/satdifuser_hostile_executed"
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}


# ------------------------------------------------------------------ containers

def zip_file(pkl, storages=(), prefix="archive", **kw):
    """A torch zip archive: data.pkl, data/<key> for each (key, bytes), version."""
    recs = [(f"{prefix}/data.pkl", pkl)]
    recs += [(f"{prefix}/data/{k}", v) for k, v in storages]
    recs.append((f"{prefix}/version", b"3\n"))
    return write_torch_zip(recs, **kw)


def legacy_file(pkl, storages=(), keys=None, cut_tail=None):
    """The legacy format: magic, protocol, sys_info pickles (protocol 2), the object pickle, the
    storage key list, then per storage: int64 element count + raw little-endian data."""
    out = b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, 1001, SYS_INFO))
    out += pkl
    out += pickle.dumps(list(keys if keys is not None else [k for k, _ in storages]), protocol=2)
    tail = b""
    for _, (numel, data) in storages:
        tail += struct.pack("<q", numel) + data
    if cut_tail is not None:
        tail = tail[:cut_tail]
    return out + tail


def tar_file():
    """The pre-0.4 tar layout (members sys_info, pickle, storages, tensors), deterministic headers."""
    import tarfile
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in (("sys_info", pickle.dumps(SYS_INFO, protocol=2)),
                           ("pickle", Pk(2).empty_dict().stop().bytes()),
                           ("storages", pickle.dumps(0, protocol=2)), ("tensors", pickle.dumps(0, protocol=2))):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            t.addfile(info, io.BytesIO(data))
    return b.getvalue()


# ------------------------------------------------------------------ pickles

def tensor_pickle(key, numel, offset, size, stride, legacy=False, stype="FloatStorage", name="w"):
    """{name: _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())}, storage by
    persistent id ('storage', torch.<stype>, key, 'cpu', numel[, None for legacy])."""
    p = Pk(2).empty_dict().put(0).ustr(name).put(1)
    p.glob("torch._utils", "_rebuild_tensor_v2").put(2)
    p.mark().mark().ustr("storage").put(3).glob("torch", stype).put(4).ustr(key).put(5).ustr("cpu").put(6).int(numel)
    if legacy:
        p.none()
    p.tuple().put(7).binpersid()
    p.int(offset).tuple_of_ints(size).tuple_of_ints(stride).false()
    p.glob("collections", "OrderedDict").empty_tuple().reduce()
    p.tuple().reduce().setitem().stop()
    return p.bytes()


def f32(vals):
    return struct.pack(f"<{len(vals)}f", *vals)


def call_pickle(module, name, args, stack_global):
    """{'state_dict': module.name(*args)} via GLOBAL (protocol 2) or STACK_GLOBAL (protocol 4)."""
    p = Pk(4 if stack_global else 2).empty_dict().ustr("state_dict")
    if stack_global:
        p.stack_glob(module, name)
    else:
        p.glob(module, name)
    p.mark()
    for a in args:
        if isinstance(a, list):
            p.empty_list().mark()
            for s in a:
                p.ustr(s)
            p.appends()
        else:
            p.ustr(a)
    p.tuple().reduce().setitem().stop()
    return p.bytes()


CALLS = [  # (file stem, module, name, args)
    ("os_system", "os", "system", [f"touch {MARKER}"]),
    ("posix_system", "posix", "system", [f"touch {MARKER}"]),
    ("nt_system", "nt", "system", [f"touch {MARKER}"]),
    ("builtins_eval", "builtins", "eval", [f"open('{MARKER}', 'w')"]),
    ("builtin_py2_eval", "__builtin__", "eval", [f"open('{MARKER}', 'w')"]),
    ("builtins_exec", "builtins", "exec", [f"open('{MARKER}', 'w')"]),
    ("builtins_import", "builtins", "__import__", ["os"]),
    ("builtins_getattr", "builtins", "getattr", ["x", "y"]),
    ("subprocess_popen", "subprocess", "Popen", [["touch", MARKER]]),
    ("webbrowser_open", "webbrowser", "open", ["about:blank"]),
    ("torch_load_nested", "torch", "load", [MARKER]),
]


def depth_lists(n):
    """n nested lists: EMPTY_LIST x n, APPEND x (n-1): stack depth and nesting depth n."""
    return Pk(2).raw(b"]" * n + b"a" * (n - 1)).stop().bytes()


def depth_tuples(n):
    """EMPTY_TUPLE then TUPLE1 x n: nesting depth n with a stack of 1."""
    return Pk(2).empty_tuple().raw(b"\x85" * n).stop().bytes()


def cycle_list():
    """{'state_dict': L} with L = [L] (EMPTY_LIST, BINPUT 1, BINGET 1, APPEND)."""
    return Pk(2).empty_dict().put(0).ustr("state_dict").empty_list().put(1).get(1).append().setitem().stop().bytes()


def cycle_dict():
    """{'state_dict': D} with D = {'self': D}."""
    return Pk(2).empty_dict().put(0).ustr("state_dict").empty_dict().put(1).ustr("self").get(1).setitem() \
        .setitem().stop().bytes()


# ------------------------------------------------------------------ the cases

def cases():
    """(file name, bytes, reason). Zip containers hold data.pkl/data/<k>/version under 'archive/'."""
    out = []
    ok4 = f32([1.0, 2.0, 3.0, 4.0])
    # controls: the builders produce loadable files
    out.append(("control_ok.pt", zip_file(tensor_pickle("0", 4, 0, (2, 2), (2, 1)), [("0", ok4)]),
                "CONTROL, must LOAD: {'w': 2x2 f32 [[1,2],[3,4]]} built by the same zip and pickle code as the others"))
    out.append(("control_ok.legacy.pt", legacy_file(tensor_pickle("0", 4, 0, (2, 2), (2, 1), legacy=True),
                                                     [("0", (4, ok4))]),
                "CONTROL, must LOAD: the same tensor in the legacy format"))
    # code execution through globals
    for stem, mod, name, args in CALLS:
        for sg in (False, True):
            op = "STACK_GLOBAL (protocol 4)" if sg else "GLOBAL (protocol 2)"
            pkl = call_pickle(mod, name, args, sg)
            out.append((f"global_{stem}{'_sg' if sg else ''}.pt", zip_file(pkl),
                        f"{op} {mod}.{name} + REDUCE({args!r}) in a zip"))
            out.append((f"global_{stem}{'_sg' if sg else ''}.legacy.pt", legacy_file(pkl),
                        f"{op} {mod}.{name} + REDUCE({args!r}) as the legacy object pickle"))
    # tensor geometry against the storage
    geo = [
        ("tensor_past_storage", 10, 0, (4, 4), (4, 1), "size (4,4) stride (4,1) needs 16 elements, storage has 10"),
        ("offset_past_storage", 10, 8, (2, 2), (2, 1), "offset 8 + extent 4 = 12 > storage 10"),
        ("numel_overflow", 1, 0, (2**40, 2**40), (0, 0),
         "size (2^40, 2^40) stride (0,0): extent 1 element fits the storage but numel 2^80 overflows int64"),
        ("numel_wrap_zero", 1, 0, (2**62, 4), (0, 0), "size (2^62, 4): numel 2^64 wraps to 0 in 64 bits"),
        ("stride_overflow", 10, 0, (3,), (2**62,), "stride 2^62 x (size-1) overflows int64 in the extent"),
        ("negative_stride", 3, 2, (3,), (-1,), "stride -1 (from offset 2: addresses 2,1,0 inside the storage)"),
        ("negative_size", 10, 0, (-2, 3), (3, 1), "a negative dimension"),
        ("negative_offset", 10, -1, (2,), (1,), "storage offset -1"),
        ("storage_numel_negative", -4, 0, (1,), (1,), "declared storage numel -4"),
    ]
    for stem, numel, off, size, stride, why in geo:
        data = f32([0.5] * max(numel, 0))
        out.append((f"{stem}.pt", zip_file(tensor_pickle("0", numel, off, size, stride), [("0", data)]), why))
        out.append((f"{stem}.legacy.pt", legacy_file(tensor_pickle("0", numel, off, size, stride, legacy=True),
                                                     [("0", (numel, data))]), why + " (legacy)"))
    out.append(("size_stride_mismatch.pt", zip_file(tensor_pickle("0", 4, 0, (2, 2), (1,)), [("0", ok4)]),
                "size has 2 dimensions, stride 1"))
    out.append(("unsupported_storage_type.pt", zip_file(tensor_pickle("0", 4, 0, (4,), (1,), stype="ComplexFloatStorage"),
                                                        [("0", ok4 + ok4)]),
                "storage type torch.ComplexFloatStorage (complex64: torch reads it, satdifuser has no such dtype)"))
    out.append(("unknown_storage_type.pt", zip_file(tensor_pickle("0", 4, 0, (4,), (1,), stype="NoSuchStorage"),
                                                    [("0", ok4)]), "storage type torch.NoSuchStorage"))
    # storage records
    out.append(("storage_missing.pt", zip_file(tensor_pickle("1", 4, 0, (4,), (1,)), [("0", ok4)]),
                "the pickle names storage '1', the archive has only data/0"))
    out.append(("storage_short.pt", zip_file(tensor_pickle("0", 10, 0, (10,), (1,)), [("0", f32([1.0] * 3))]),
                "storage declared 10 floats (40 bytes), record data/0 holds 12 bytes"))
    out.append(("storage_missing.legacy.pt", legacy_file(tensor_pickle("1", 4, 0, (4,), (1,), legacy=True),
                                                          [("0", (4, ok4))]),
                "legacy: the pickle names storage '1', the key list and the storages have only '0'"))
    out.append(("storage_short.legacy.pt", legacy_file(tensor_pickle("0", 10, 0, (10,), (1,), legacy=True),
                                                        [("0", (10, f32([1.0] * 10)))], cut_tail=8 + 12),
                "legacy: storage of 10 floats, the file ends 12 bytes into its data"))
    out.append(("storage_count_mismatch.legacy.pt",
                legacy_file(tensor_pickle("0", 4, 0, (4,), (1,), legacy=True), [("0", (1000, ok4))]),
                "legacy: the data header says 1000 elements, the pickle 4, the file holds 4"))
    # zip containers
    good = zip_file(tensor_pickle("0", 4, 0, (4,), (1,)), [("0", ok4)])
    cd = good.rfind(b"PK\x01\x02")
    out.append(("zip_truncated_cd.pt", good[:cd + 20], "the archive is cut inside its central directory (no end record)"))
    out.append(("zip_truncated_data.pt", good[:100], "the archive is cut inside data.pkl"))
    out.append(("zip_entry_2p40.pt", zip_file(tensor_pickle("0", 4, 0, (4,), (1,)), [("0", ok4)],
                                              fake_sizes={"archive/data/0": 2**40}),
                "central directory (ZIP64 extra) says data/0 is 2^40 bytes; the file is < 1 KB"))
    out.append(("zip_pkl_2p40.pt", zip_file(tensor_pickle("0", 4, 0, (4,), (1,)), [("0", ok4)],
                                            fake_sizes={"archive/data.pkl": 2**40}),
                "central directory (ZIP64 extra) says data.pkl is 2^40 bytes"))
    out.append(("zip_deflated.pt", zip_file(tensor_pickle("0", 4, 0, (4,), (1,)), [("0", ok4)],
                                            deflate={"archive/data/0"}),
                "data/0 is deflate-compressed (method 8): torch never writes these"))
    out.append(("zip_no_data_pkl.pt", write_torch_zip([("archive/version", b"3\n"), ("archive/data/0", ok4)]),
                "no data.pkl record"))
    bomb = [("a/data.pkl", tensor_pickle("0", 4, 0, (4,), (1,))), ("a/data/0", ok4), ("a/version", b"3\n")]
    bomb += [(f"a/{i:x}", b"") for i in range(10000)]
    out.append(("zip_bomb_10000_entries.pt", write_torch_zip(bomb, align=False),
                "10000 stored (empty) entries beside a valid data.pkl/data/0/version under prefix 'a/'"))
    # the pickle machine
    out.append(("memo_get_out_of_range.pt", zip_file(Pk(2).empty_dict().put(0).ustr("k").get(5).setitem().stop().bytes()),
                "BINGET 5 with only memo entry 0 set"))
    out.append(("memo_long_get_huge.pt", zip_file(Pk(2).empty_dict().ustr("k").raw(b"j\xff\xff\xff\x7f").setitem()
                                                   .stop().bytes()), "LONG_BINGET 2^31-1 on an empty memo"))
    out.append(("stop_empty_stack.pt", zip_file(Pk(2).stop().bytes()), "STOP with an empty stack"))
    out.append(("stop_empty_stack.legacy.pt", legacy_file(Pk(2).stop().bytes()), "STOP with an empty stack (legacy)"))
    out.append(("pop_mark_without_mark.pt", zip_file(Pk(2).empty_list().pop_mark().stop().bytes()),
                "POP_MARK with no MARK on the stack"))
    out.append(("setitems_without_mark.pt", zip_file(Pk(2).empty_dict().ustr("a").int(1).setitems().stop().bytes()),
                "SETITEMS with no MARK on the stack"))
    out.append(("append_to_int.pt", zip_file(Pk(2).int(3).int(4).append().stop().bytes()), "APPEND onto an int"))
    out.append(("no_stop.pt", zip_file(Pk(2).empty_dict().bytes()), "the pickle ends without STOP"))
    out.append(("unknown_opcode.pt", zip_file(Pk(2).empty_dict().raw(b"\xff").stop().bytes()), "opcode 0xff"))
    out.append(("binunicode_past_end.pt", zip_file(Pk(2).raw(b"X\x00\x00\x00\x40abc").stop().bytes()),
                "BINUNICODE length 2^30 past the end of the pickle"))
    out.append(("depth_bomb_lists.pt", zip_file(depth_lists(100000)),
                "100000 EMPTY_LIST then 99999 APPEND: lists nested 100000 deep"))
    out.append(("depth_bomb_tuples.legacy.pt", legacy_file(depth_tuples(20000)),
                "EMPTY_TUPLE then 20000 TUPLE1: tuples nested 20000 deep (stack of 1)"))
    out.append(("cycle_list.pt", zip_file(cycle_list()), "a list that contains itself (BINPUT/BINGET/APPEND)"))
    out.append(("cycle_dict.legacy.pt", legacy_file(cycle_dict()), "a dict that contains itself (legacy)"))
    # formats
    out.append(("legacy_bad_magic.pt", pickle.dumps(12345, protocol=2) + legacy_file(Pk(2).empty_dict().stop().bytes())[15:],
                "legacy format whose magic number pickle is 12345"))
    out.append(("legacy_protocol_999.pt", pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(999, protocol=2)
                + pickle.dumps(SYS_INFO, protocol=2) + Pk(2).empty_dict().stop().bytes() + pickle.dumps([], protocol=2),
                "legacy format with protocol version 999 (torch writes 1001)"))
    out.append(("legacy_big_endian_sysinfo.legacy.pt",
                pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
                + pickle.dumps(dict(SYS_INFO, little_endian=False), protocol=2)
                + tensor_pickle("0", 4, 0, (4,), (1,), legacy=True) + pickle.dumps(["0"], protocol=2)
                + struct.pack("<q", 4) + ok4, "legacy sys_info says little_endian False (refused or byte-swapped: "
                "not silently read as little-endian)"))
    out.append(("tar_format.pt", tar_file(), "the pre-0.4 tar format, members sys_info, pickle, storages, tensors "
                                             "(may be refused with a clear message)"))
    out.append(("empty.pt", b"", "an empty file"))
    return out


def check(path, reason):
    """Never executes anything: torch 1.13's weights_only unpickler (an allow-list) where torch can
    read the container, else a plain pickle.Unpickler whose find_class raises. Returns a short
    description of what torch 1.13 does."""
    import torch
    try:
        torch.load(path, weights_only=True)
        return "LOADS"
    except Exception as e:  # noqa: BLE001 (recording torch's reaction, whatever it is)
        msg = " ".join(str(e).split())
        if "WeightsUnpickler error:" in msg:
            msg = msg.split("WeightsUnpickler error:", 1)[1].strip()
        return f"{type(e).__name__}: {msg[:100]}"


def main_hostile(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, f))
    rows = []
    for name, data, reason in cases():
        path = os.path.join(out_dir, name)
        with open(path, "wb") as f:
            f.write(data)
        rows.append((name, len(data), reason, check(path, reason)))
    assert not os.path.exists(MARKER), "a payload ran"
    for name, _, _, seen in rows:
        if name.startswith("control_"):
            assert "LOADS" in seen, f"{name}: {seen}"
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(README_HEAD)
        for name, size, reason, seen in rows:
            f.write(f"| {name} | {size} | {reason} | {seen} |\n")
    total = sum(r[1] for r in rows)
    print(f"  hostile: {len(rows)} files, {total} bytes", flush=True)
    return rows


README_HEAD = """# Hostile PyTorch checkpoints

Made by weights_tools/make_torch_hostile.py (every byte written by hand: pickles with
torch_pickle_tools.Pk, zips with its torch-layout writer). Every file except the two `control_*`
files must be refused by satdifuser's reader with a message naming the problem, exit status 1 or
2, nothing executed and no output file written. The controls are built by the same code and must
load (a 2x2 f32 tensor 'w' = [[1, 2], [3, 4]]). `.pt` files are zip archives (prefix `archive/`
unless said), `.legacy.pt` files the legacy format (magic/protocol/sys_info pickles, object pickle,
key list, storages).

Payloads that would run code only touch /tmp/satdifuser_hostile_executed (or open about:blank); a
test can check that this file does not appear. Allow-list, not block-list: `__builtin__.eval` (the
protocol-2 spelling of builtins.eval that Python's unpickler maps back), `nt.system`,
`builtins.getattr` and `torch.load` are there to catch a reader that only blocks known names.

Cycles: OmegaConf configs (runpy_head_*.pth) legitimately hold memo back-references (each child
node's `_parent` is its DictConfig, referenced by BINGET before the parent's BUILD), so a reader
cannot refuse every back-reference; what it must not do is loop or recurse without bound when it
walks plain lists/dicts (cycle_*).

The last column is what torch 1.13.1 does with `torch.load(path, weights_only=True)` (for
information; it is not the required message: torch's allow-list unpickler refuses the globals, but
torch LOADS some files satdifuser must refuse, e.g. the deflated record, the short storage, the
bombs and the cycles).

| file | bytes | why it must be refused | torch 1.13 |
| --- | --- | --- | --- |
"""


if __name__ == "__main__":
    main_hostile(os.path.join(os.path.dirname(HERE), "tests", "data", "torch", "hostile"))
