#!/usr/bin/env python3
"""Writes the small PNG / TIFF / NPY files in tests/data used by tests/test_png.c,
test_tiff.c and test_npy.c, with their ground truth (.npy). Dev-time only: the
files are committed, C tests never run this. Needs numpy (Debian python3-numpy).
The PNG and TIFF encoders below are written here from the specs (no codec
library), so that the files exercise cases the third-party data lacks:
16-bit Adam7, every PNG filter, stored deflate over several IDATs; TIFF
BigTIFF big-endian PackBits, planar tiles, 32/64-bit predictors, LZW past 4094 codes.
Usage: python3 weights_tools/gen_io_test_data.py  (from the repository root)"""
import struct, zlib
import numpy as np

OUT = "tests/data/"
rng = np.random.default_rng(20261127)

# ---------------------------------------------------------------- PNG
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]

def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)

def pack_rows(a, depth):
    """a: (h, w, c) samples -> list of packed row bytes."""
    rows = []
    for r in a:
        s = r.reshape(-1)
        if depth == 16:
            rows.append(s.astype(">u2").tobytes())
        elif depth == 8:
            rows.append(s.astype(np.uint8).tobytes())
        else:
            bits = "".join(format(int(v), "0%db" % depth) for v in s)
            bits += "0" * (-len(bits) % 8)
            rows.append(bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)))
    return rows

def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)

def filter_rows(rows, bpp, first_filter):
    out, prev = b"", bytes(len(rows[0])) if rows else b""
    for y, row in enumerate(rows):
        f = (first_filter + y) % 5
        fr = bytearray()
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][f]
            fr.append((x - pred) & 255)
        out += bytes([f]) + bytes(fr)
        prev = row
    return out

def write_png(name, a, depth, color_type, interlace=0, plte=None, trns=None, level=9, idat_parts=1, first_filter=0):
    h, w, c = a.shape
    bpp = max(1, c * depth // 8)
    data = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for (x0, y0, dx, dy) in passes:
        sub = a[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        data += filter_rows(pack_rows(sub, depth), bpp, first_filter)
    z = zlib.compress(data, level)
    f = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, interlace))
    f += chunk(b"tEXt", b"Comment\0made by gen_io_test_data.py")
    if plte is not None:
        f += chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).reshape(-1)))
    if trns is not None:
        f += chunk(b"tRNS", trns)
    step = -(-len(z) // idat_parts)
    for i in range(0, len(z), step):
        f += chunk(b"IDAT", z[i:i + step])
    f += chunk(b"IEND", b"")
    open(OUT + name + ".png", "wb").write(f)
    np.save(OUT + name + ".raw.npy", a.astype(np.uint16 if depth == 16 else np.uint8))

def save_rgba(name, rgba):
    np.save(OUT + name + ".rgba.npy", rgba)

def make_pngs():
    # Gray 2-bit, Adam7, odd size (passes with a single column/row).
    a = rng.integers(0, 4, (5, 7, 1))
    write_png("png_gray2_adam7", a, 2, 0, interlace=1)
    g = (a[..., 0] * 85).astype(np.uint8)
    save_rgba("png_gray2_adam7", np.stack([g, g, g, np.full_like(g, 255)], -1))
    # RGBA 16-bit, Adam7, 5x3, every filter.
    a = rng.integers(0, 65536, (3, 5, 4))
    write_png("png_rgba16_adam7", a, 16, 6, interlace=1, first_filter=1)
    save_rgba("png_rgba16_adam7", a.astype(np.uint16))
    # Palette 4-bit with a tRNS shorter than the palette.
    pal = rng.integers(0, 256, (11, 3))
    tr = bytes([0, 64, 128, 200, 255])
    a = rng.integers(0, 11, (4, 9, 1))
    write_png("png_pal4_trns", a, 4, 3, plte=pal, trns=tr, first_filter=2)
    alpha = np.full(11, 255)
    alpha[:5] = list(tr)
    save_rgba("png_pal4_trns", np.concatenate([pal[a[..., 0]], alpha[a[..., 0]][..., None]], -1).astype(np.uint8))
    # RGB 8-bit, one filter per row (0..4), tRNS key matching some pixels.
    a = rng.integers(0, 4, (5, 6, 3)) * 60
    a[1, 2] = a[3, 4] = (60, 120, 0)
    write_png("png_rgb8_filters", a, 8, 2, trns=struct.pack(">HHH", 60, 120, 0))
    alpha = np.where((a == (60, 120, 0)).all(-1), 0, 255)
    save_rgba("png_rgb8_filters", np.concatenate([a, alpha[..., None]], -1).astype(np.uint8))
    # Gray 16-bit with a tRNS key.
    a = rng.integers(0, 4, (4, 4, 1)) * 21845
    write_png("png_gray16_trns", a, 16, 0, trns=struct.pack(">H", 21845), first_filter=3)
    g = a[..., 0]
    save_rgba("png_gray16_trns", np.stack([g, g, g, np.where(g == 21845, 0, 65535)], -1).astype(np.uint16))
    # Gray+alpha 8-bit, stored (level 0) deflate split over 3 IDAT chunks.
    a = rng.integers(0, 256, (3, 3, 2))
    write_png("png_ga8_stored", a, 8, 4, level=0, idat_parts=3)
    save_rgba("png_ga8_stored", np.stack([a[..., 0]] * 3 + [a[..., 1]], -1).astype(np.uint8))

# ---------------------------------------------------------------- TIFF
def lzw_encode(data):
    """TIFF LZW: MSB-first codes, Clear=256, EOI=257, width grows when the next code needs it."""
    out, acc, nacc = bytearray(), 0, 0
    def put(code, width):
        nonlocal acc, nacc
        acc = (acc << width) | code
        nacc += width
        while nacc >= 8:
            out.append((acc >> (nacc - 8)) & 255)
            nacc -= 8
    width = 9
    put(256, width)
    table, nxt, w = {bytes([i]): i for i in range(256)}, 258, b""
    for byte in data:
        wc = w + bytes([byte])
        if wc in table:
            w = wc
            continue
        put(table[w], width)
        table[wc] = nxt
        nxt += 1
        if nxt == 4094:  # table full: Clear and start over
            put(256, width)
            table, nxt, width = {bytes([i]): i for i in range(256)}, 258, 9
        elif nxt > (1 << width) - 1:
            width += 1
        w = bytes([byte])
    if w:
        put(table[w], width)
        nxt += 1
        if nxt > (1 << width) - 1 and width < 12:
            width += 1
    put(257, width)
    if nacc:
        out.append((acc << (8 - nacc)) & 255)
    return bytes(out)

def packbits(data):
    out, i, n = bytearray(), 0, len(data)
    while i < n:
        j = i
        while j + 1 < n and data[j + 1] == data[i] and j - i < 127:
            j += 1
        if j > i:  # run of j-i+1 equal bytes
            out += bytes([(1 - (j - i + 1)) & 255, data[i]])
            i = j + 1
            continue
        j = i + 1
        while j < n and j - i < 128 and not (j + 1 < n and data[j] == data[j + 1]):
            j += 1
        out += bytes([j - i - 1]) + data[i:j]
        i = j
    return bytes(out)

def predict_rows(chunk, predictor, bo):
    """chunk: (rows, cols, spc) values; returns the encoded bytes in byte order bo."""
    rows, cols, c = chunk.shape
    nb = chunk.dtype.itemsize
    v = np.ascontiguousarray(chunk.astype(chunk.dtype.newbyteorder("=")))
    if predictor == 2:  # horizontal differencing of the samples as unsigned integers (wraps)
        u = v.view("u%d" % nb)
        d = u.copy()
        d[:, 1:] = u[:, 1:] - u[:, :-1]
        return d.astype(d.dtype.newbyteorder(bo)).tobytes()
    if predictor == 3:  # byte planes, most significant first, then bytewise differencing
        be = np.ascontiguousarray(v.astype(v.dtype.newbyteorder(">"))).view(np.uint8).reshape(rows, cols * c, nb)
        planes = be.transpose(0, 2, 1).reshape(rows, -1).astype(np.int32)
        d = planes.copy()
        d[:, c:] = planes[:, c:] - planes[:, :-c]
        return (d & 255).astype(np.uint8).tobytes()
    return v.astype(v.dtype.newbyteorder(bo)).tobytes()

def compress(raw, code):
    if code == 1: return raw
    if code == 5: return lzw_encode(raw)
    if code in (8, 32946): return zlib.compress(raw, 6)
    if code == 32773: return packbits(raw)

def write_tiff(name, a, *, big_endian=False, bigtiff=False, tile=None, rows_per_strip=None, planar=1,
               compression=1, predictor=1, geo=None, nodata=None):
    """a: (bands, H, W) array; writes the pixel data first and the IFD last."""
    bo = ">" if big_endian else "<"
    bands, H, W = a.shape
    fa = a.astype(a.dtype.newbyteorder(bo))
    chunks = []
    planes = [fa[p:p + 1] for p in range(bands)] if planar == 2 else [fa]
    for pl in planes:
        hwc = np.moveaxis(pl, 0, -1)  # (H, W, spc)
        if tile:
            tw, th = tile
            for ty in range(0, H, th):
                for tx in range(0, W, tw):
                    t = np.zeros((th, tw, hwc.shape[2]), hwc.dtype)
                    part = hwc[ty:ty + th, tx:tx + tw]
                    t[:part.shape[0], :part.shape[1]] = part
                    chunks.append(compress(predict_rows(t, predictor, bo), compression))
        else:
            for y in range(0, H, rows_per_strip):
                chunks.append(compress(predict_rows(hwc[y:y + rows_per_strip], predictor, bo), compression))
    body = bytearray()
    hdr_len = 16 if bigtiff else 8
    offsets = []
    for c in chunks:
        offsets.append(hdr_len + len(body))
        body += c
        if len(body) % 2: body += b"\0"
    kind = {"u": 1, "i": 2, "f": 3}[a.dtype.kind]
    tags = [(256, 4, [W]), (257, 4, [H]), (258, 3, [a.dtype.itemsize * 8] * bands), (259, 3, [compression]),
            (262, 3, [2 if bands == 3 and planar == 1 else 1]), (277, 3, [bands]), (284, 3, [planar]),
            (339, 3, [kind] * bands)]
    if predictor != 1: tags.append((317, 3, [predictor]))
    if tile:
        tags += [(322, 3, [tile[0]]), (323, 3, [tile[1]]), (324, 16 if bigtiff else 4, offsets),
                 (325, 4, [len(c) for c in chunks])]
    else:
        tags += [(273, 16 if bigtiff else 4, offsets), (278, 4, [rows_per_strip]), (279, 4, [len(c) for c in chunks])]
    if geo:
        scale, tie, keys = geo
        tags += [(33550, 12, scale), (33922, 12, tie), (34735, 3, keys)]
    if nodata is not None:
        tags.append((42113, 2, list(nodata.encode() + b"\0")))
    tags.sort()
    fmt = {1: "B", 2: "B", 3: "H", 4: "I", 12: "d", 16: "Q"}
    ifd_off = hdr_len + len(body)
    entry_size, value_size = (20, 8) if bigtiff else (12, 4)
    n = len(tags)
    extra_off = ifd_off + (8 if bigtiff else 2) + n * entry_size + value_size
    ifd, extra = bytearray(), bytearray()
    ifd += struct.pack(bo + ("Q" if bigtiff else "H"), n)
    for tag, typ, vals in tags:
        data = struct.pack(bo + fmt[typ] * len(vals), *vals)
        ifd += struct.pack(bo + "HH" + ("Q" if bigtiff else "I"), tag, typ, len(vals))
        if len(data) <= value_size:
            ifd += data + b"\0" * (value_size - len(data))
        else:
            if len(extra) % 2: extra += b"\0"
            ifd += struct.pack(bo + ("Q" if bigtiff else "I"), extra_off + len(extra))
            extra += data
    ifd += b"\0" * value_size  # no next IFD
    if bigtiff:
        head = (b"MM" if big_endian else b"II") + struct.pack(bo + "HHHQ", 43, 8, 0, ifd_off)
    else:
        head = (b"MM" if big_endian else b"II") + struct.pack(bo + "HI", 42, ifd_off)
    open(OUT + name + ".tif", "wb").write(head + body + ifd + extra)
    np.save(OUT + name + ".npy", a.astype(a.dtype.newbyteorder("<")))

def make_tiffs():
    a = rng.integers(-30000, 30000, (2, 18, 20)).astype(np.int16)
    a[0, :, :10] = np.arange(10) * 1000 - 4000  # smooth part: small differences
    write_tiff("tiff_mm_i16_lzw_pred2_tiled_planar", a, big_endian=True, tile=(16, 16), planar=2, compression=5,
               predictor=2)
    a = (rng.standard_normal((1, 5, 7)) * 1e3).astype(np.float64)
    a[0, 1, 1], a[0, 2, 3], a[0, 4, 6] = np.nan, np.inf, -9999.0
    keys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32631]
    write_tiff("tiff_f64_deflate_pred3_geo", a, rows_per_strip=3, compression=8, predictor=3,
               geo=([10.0, 10.0, 0.0], [0.0, 0.0, 0.0, 500000.0, 4600000.0, 0.0], keys), nodata="-9999")
    a = np.repeat(rng.integers(0, 65536, (3, 6, 3)), 3, axis=2).astype(np.uint16)  # runs for PackBits
    a[:, 2] = 7
    write_tiff("tiff_bigmm_u16_packbits", a, big_endian=True, bigtiff=True, rows_per_strip=4, compression=32773)
    a = rng.integers(0, 2**32, (3, 5, 17), dtype=np.uint64).astype(np.uint32)
    write_tiff("tiff_u32_zip32946_pred2_rgb", a, tile=(16, 16), compression=32946, predictor=2)
    yy, xx = np.mgrid[0:30, 0:40]
    a = np.stack([np.sin(xx / 5.0) * yy, rng.standard_normal((30, 40)), (xx * yy) / 7.0]).astype(np.float32)
    write_tiff("tiff_mm_f32_lzw_pred3_rgb", a, big_endian=True, rows_per_strip=15, compression=5, predictor=3)
    a = np.array([[[-128, -1, 0, 127], [5, -5, 50, -50], [1, 2, 3, 4]]], np.int8)
    keys = [1, 1, 0, 3, 1024, 0, 1, 2, 1025, 0, 1, 2, 2048, 0, 1, 4326]
    write_tiff("tiff_i8_none_point", a, rows_per_strip=3,
               geo=([0.25, 0.25, 0.0], [0.0, 0.0, 0.0, 10.0, 45.0, 0.0], keys), nodata="nan")

# ---------------------------------------------------------------- NPY (numpy's own writer)
def make_npys():
    from numpy.lib import format as npf
    def save(name, arr, version=None, fortran=False):
        with open(OUT + name + ".npy", "wb") as f:
            if fortran:
                arr = np.asfortranarray(arr)
            npf.write_array(f, arr, version=version)
    save("npy_be_i2", (np.arange(6).reshape(2, 3) * -1000 + 7).astype(">i2"))
    save("npy_fortran_f8", np.arange(24, dtype="<f8").reshape(2, 3, 4) * 0.5, fortran=True)
    save("npy_v2_u1_scalar", np.array(42, np.uint8), version=(2, 0))
    save("npy_v3_empty_f4", np.zeros((0, 3), "<f4"), version=(3, 0))
    save("npy_f2_special", np.array([1.5, -2.0, 65504.0, 6e-8, np.inf, -0.0], "<f2"))
    save("npy_be_f4_4d", (np.arange(2 * 1 * 3 * 2) - 5.25).reshape(2, 1, 3, 2).astype(">f4"))
    save("npy_b1", np.array([[True, False, True]]))

if __name__ == "__main__":
    make_pngs()
    make_tiffs()
    make_npys()
