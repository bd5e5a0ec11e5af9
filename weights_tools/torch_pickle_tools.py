"""Byte-level helpers for the PyTorch checkpoint fixtures (weights_tools/make_torch_checkpoints.py,
weights_tools/make_torch_hostile.py): no torch needed here.

- write_torch_zip(): a zip archive laid out exactly as torch's PyTorchStreamWriter (miniz) writes
  it: every entry STORED, general-purpose flags 0x0808 (data descriptor + UTF-8), zero time/date,
  CRC and sizes 0 in the local header and given in a 16-byte data descriptor (PK\\7\\8) after the
  data (an empty entry: flags 0x0800 and no descriptor), a local extra field 'FB' + padding of 'Z' bytes so that each entry's data starts at a
  multiple of 64, central directory with version 0 and no extra fields, then ALWAYS a ZIP64
  end-of-central-directory record (PK\6\6, version made by 0x031E, needed 0x2D) and its
  locator (PK\6\7) before the plain end record (PK\5\6), even for tiny files.
  Checked byte for byte against torch.save's own output (make_torch_checkpoints.py verify step).
  Options give the hostile variants (deflated entry, ZIP64 size claims, no alignment padding).
- Pk: a pickle opcode assembler (append opcodes, get bytes) for hand-built pickles.
- pickle_globals(): the (module, name) pairs a pickle references via GLOBAL / STACK_GLOBAL,
  found with pickletools.genops (STACK_GLOBAL's operands are the two strings pushed before it).
"""
import io
import pickletools
import struct
import zlib


def _pad_for(cursor, name_len, align=64):
    start = cursor + 30 + name_len + 4  # local header + name + the 'FB' extra field's own header
    return (-start) % align


def write_torch_zip(records, *, deflate=(), fake_sizes=None, align=True, cut_at=None, zip64_end=True):
    """records: list of (name, bytes). deflate: names stored with method 8 (raw deflate).
    fake_sizes: {name: n} claims n bytes (compressed and uncompressed) for that entry in the
    central directory through a ZIP64 extra field (real data unchanged). align=False: no
    'FB' field. cut_at: return only the first cut_at bytes. Returns the archive bytes."""
    fake_sizes = fake_sizes or {}
    out = bytearray()
    central = []
    for name, data in records:
        nb = name.encode("utf-8")
        method = 8 if name in deflate else 0
        stored = data
        if method == 8:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            stored = c.compress(data) + c.flush()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        offset = len(out)
        extra = b""
        if align:
            pad = _pad_for(offset, len(nb))
            extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        flags = 0x0808 if data else 0x0800  # miniz writes no data descriptor for an empty entry
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, flags, method, 0, 0, 0, 0, 0, len(nb), len(extra))
        out += nb + extra + stored
        if data:
            out += struct.pack("<IIII", 0x08074B50, crc, len(stored), len(data))
        central.append((nb, flags, method, crc, len(stored), len(data), offset, fake_sizes.get(name)))
    cd_start = len(out)
    for nb, flags, method, crc, csize, usize, offset, fake in central:
        extra = b""
        if fake is not None:
            csize = usize = 0xFFFFFFFF
            extra = struct.pack("<HHQQ", 0x0001, 16, fake, fake)
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, flags, method, 0, 0, crc, csize, usize,
                           len(nb), len(extra), 0, 0, 0, 0, offset)
        out += nb + extra
    cd_size = len(out) - cd_start
    n = len(central)
    if zip64_end:  # torch (miniz) always writes the ZIP64 end record and its locator
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x2D, 0, 0, n, n, cd_size, cd_start)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_start, 0)
    if cut_at is not None:
        return bytes(out[:cut_at])
    return bytes(out)


def read_zip_records(raw):
    """name -> bytes of a STORED zip (Python's zipfile, for verification)."""
    import zipfile
    z = zipfile.ZipFile(io.BytesIO(raw))
    return [(i.filename, z.read(i.filename)) for i in z.infolist()]


class Pk:
    """Hand-built pickles: each method appends one opcode (names as in pickletools)."""

    def __init__(self, proto=2):
        self.b = bytearray()
        if proto is not None:
            self.b += bytes([0x80, proto])

    def raw(self, data):
        self.b += data
        return self

    def op(self, ch):
        self.b += ch.encode("latin-1") if isinstance(ch, str) else ch
        return self

    def glob(self, module, name):  # GLOBAL 'module\nname\n'
        self.b += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        return self

    def stack_glob(self, module, name):  # SHORT_BINUNICODE x2, STACK_GLOBAL (protocol 4)
        self.str(module).str(name)
        self.b += b"\x93"
        return self

    def str(self, s):
        e = s.encode("utf-8")
        if len(e) < 256:
            self.b += b"\x8c" + bytes([len(e)]) + e  # SHORT_BINUNICODE (protocol 4)
        else:
            self.b += b"X" + struct.pack("<I", len(e)) + e
        return self

    def ustr(self, s):  # BINUNICODE (protocol 2)
        e = s.encode("utf-8")
        self.b += b"X" + struct.pack("<I", len(e)) + e
        return self

    def int(self, v):
        if 0 <= v < 256:
            self.b += b"K" + bytes([v])
        elif -2**31 <= v < 2**31:
            self.b += b"J" + struct.pack("<i", v)
        else:  # LONG1: little-endian two's complement
            n = (v.bit_length() + 8) // 8
            self.b += b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)
        return self

    def tuple_of_ints(self, vals):
        self.b += b"("
        for v in vals:
            self.int(v)
        self.b += b"t"
        return self

    def put(self, i):
        self.b += (b"q" + bytes([i])) if i < 256 else (b"r" + struct.pack("<I", i))
        return self

    def get(self, i):
        self.b += (b"h" + bytes([i])) if i < 256 else (b"j" + struct.pack("<I", i))
        return self

    def mark(self):
        return self.op("(")

    def empty_dict(self):
        return self.op("}")

    def empty_list(self):
        return self.op("]")

    def empty_tuple(self):
        return self.op(")")

    def setitem(self):
        return self.op("s")

    def setitems(self):
        return self.op("u")

    def append(self):
        return self.op("a")

    def appends(self):
        return self.op("e")

    def tuple(self):
        return self.op("t")

    def tuple1(self):
        return self.op("\x85")

    def reduce(self):
        return self.op("R")

    def build(self):
        return self.op("b")

    def binpersid(self):
        return self.op("Q")

    def none(self):
        return self.op("N")

    def false(self):
        return self.op("\x89")

    def true(self):
        return self.op("\x88")

    def pop(self):
        return self.op("0")

    def pop_mark(self):
        return self.op("1")

    def stop(self):
        return self.op(".")

    def bytes(self):
        return bytes(self.b)


def pickle_globals(data, opcodes=None):
    """Set of (module, name) referenced by the pickle(s) in data (several consecutive pickles, as
    in the legacy format, are all read). opcodes: a set that receives the opcode names used."""
    out = set()
    f = io.BytesIO(data)
    while f.tell() < len(data):
        strings = []
        try:
            for op, arg, _ in pickletools.genops(f):
                if opcodes is not None:
                    opcodes.add(op.name)
                if op.name == "GLOBAL":
                    m, n = arg.split(" ", 1)
                    out.add((m, n))
                elif op.name == "STACK_GLOBAL":
                    out.add((strings[-2], strings[-1]))
                if isinstance(arg, str) and "UNICODE" in op.name:
                    strings.append(arg)
        except ValueError:
            break  # trailing raw storage data (legacy format)
        if f.tell() >= len(data):
            break
        # genops stops after STOP; the next byte must start another pickle (PROTO) or it is data
        if data[f.tell()] != 0x80:
            break
    return out
