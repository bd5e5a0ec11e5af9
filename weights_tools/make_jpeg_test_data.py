#!/usr/bin/python3
"""Writes the JPEG test files of tests/test_jpeg.c into tests/data/jpeg/.

Ground truth is libjpeg-turbo's output through Debian's python3-pil (Image.open(f).convert
is not used: the decoded mode is L or RGB as libjpeg gives it, islow IDCT, fancy upsampling).

  * PIL-encoded: baseline gray, 4:4:4, 4:2:2, 4:2:0, odd sizes, quality 100 and 10,
    optimized Huffman tables, progressive (gray and colour), EXIF/COM segments;
  * written by the small baseline encoder below (PIL 9.4 cannot write these): restart
    intervals, 4:1:1, 4:4:0, 3x1 sampling, one scan per component, an Adobe RGB JPEG;
  * real images: NAIP aerial chips (public domain, ../shared/data/satellite/chesapeake)
    and a crop of Kodak's kodim23 (unrestricted), encoded by PIL;
  * corrupt/unsupported files (truncations, broken headers, SOF3/SOF9/12-bit/CMYK),
    listed in index.txt with the outcome expected: "ok" (pixels compared), "refuse"
    (must be refused) or "any" (bit flips in the entropy data: must not crash).
Each ok file NAME.jpg has NAME.npy beside it: uint8 (H, W) or (H, W, 3), PIL's pixels.
Run from the repository root: /usr/bin/python3 weights_tools/make_jpeg_test_data.py
"""
import io
import os
import struct

import numpy as np
from PIL import Image

OUT = "tests/data/jpeg"
# libjpeg-turbo's testimages (a git snapshot's files, e.g. `git show HEAD:testimages/X`):
# testorig/testimg* under the IJG License, monkey12.jpg under the 3-clause BSD License
# (testimages/LICENSE.txt). Files already in OUT are kept when this folder is absent.
LJT = os.environ.get("LJT_TESTIMAGES", "/tmp/ljt")
SHARED = next((p for p in ("/work/shared/data", "../shared/data") if os.path.isdir(p)), None)
index = []


def write_ok(name, data):
    with open(f"{OUT}/{name}.jpg", "wb") as f:
        f.write(data)
    im = Image.open(io.BytesIO(data))
    im.load()
    np.save(f"{OUT}/{name}.npy", np.asarray(im, dtype=np.uint8))
    index.append((name + ".jpg", "ok"))


def write_bad(name, data, expect):
    with open(f"{OUT}/{name}.jpg", "wb") as f:
        f.write(data)
    index.append((name + ".jpg", expect))


def pil_jpeg(img, **kw):
    b = io.BytesIO()
    img.save(b, "JPEG", **kw)
    return b.getvalue()


def synthetic(w, h, seed):
    """Smooth gradients + edges + noise: exercises every coefficient and the clamping."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    g = 255 * (x + y) / (w + h)
    b = np.where((x // 6 + y // 4) % 2 == 0, 230.0, 20.0)
    a = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------- a small baseline encoder
ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
          21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53,
          60, 61, 54, 47, 55, 62, 63]
C = np.array([[np.sqrt((1 if k == 0 else 2) / 8) * np.cos((2 * n + 1) * k * np.pi / 16) for n in range(8)]
              for k in range(8)])
# Flat-ish code tables: DC symbols 0..11 with 4-bit codes; AC symbols: EOB and ZRL and all
# (run, size<=10) with lengths 2..8 for the first few and 8 bits for the others (never all ones).
DC_SYMS = list(range(12))
AC_SYMS = [0x00, 0x01, 0x02, 0x11, 0x03, 0x21, 0x12, 0x04] + [r << 4 | s for r in range(16) for s in range(1, 11)
                                                             if (r << 4 | s) not in (0x01, 0x02, 0x11, 0x03, 0x21, 0x12, 0x04)] + [0xF0]


def make_table(syms, lengths):
    counts = [0] * 16
    for l in lengths:
        counts[l - 1] += 1
    codes, code, k = {}, 0, 0
    for l in range(1, 17):
        for _ in range(counts[l - 1]):
            codes[syms[k]] = (code, l)
            code += 1
            k += 1
        code <<= 1
    return counts, codes


DC_TABLE = make_table(DC_SYMS, [4] * 12)
AC_LENGTHS = [2, 3, 4, 5, 6, 7, 8, 9] + [10] * 0
# 8 short codes then the rest at 9..10 bits: 2+3+..: keep the Kraft sum below 1
AC_LENGTHS = [2, 3, 3, 4, 5, 6, 7, 8] + [10] * (len(AC_SYMS) - 8)
AC_TABLE = make_table(AC_SYMS, AC_LENGTHS)
assert sum(2.0 ** -l for l in AC_LENGTHS) < 1


class Bits:
    def __init__(self):
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, v, n):
        for i in range(n - 1, -1, -1):
            self.acc = self.acc << 1 | ((v >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc, self.n = 0, 0

    def flush(self):  # pad with 1 bits
        while self.n:
            self.put(1, 1)


def magnitude(v):
    s = int(abs(v)).bit_length()
    return s, (v if v >= 0 else v + (1 << s) - 1)


def encode_block(bits, blk, pred, q):
    coef = C @ (blk - 128.0) @ C.T
    zz = [int(np.round(coef.flat[ZIGZAG[k]] / q[k])) for k in range(64)]
    diff = zz[0] - pred
    s, v = magnitude(diff)
    bits.put(*DC_TABLE[1][s])
    bits.put(v, s)
    run = 0
    last = max([k for k in range(1, 64) if zz[k] != 0], default=0)
    for k in range(1, last + 1):
        if zz[k] == 0:
            run += 1
            continue
        while run > 15:
            bits.put(*AC_TABLE[1][0xF0])
            run -= 16
        s, v = magnitude(zz[k])
        bits.put(*AC_TABLE[1][run << 4 | s])
        bits.put(v, s)
        run = 0
    if last < 63:
        bits.put(*AC_TABLE[1][0x00])
    return zz[0]


def seg(marker, payload):
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def own_jpeg(img, sampling, restart=0, per_component_scans=False, adobe_rgb=False, quality_scale=1.0):
    """Baseline JPEG of an RGB or L PIL image. sampling: [(h, v)] per component."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 2:
        planes = [a]
    elif adobe_rgb:
        planes = [a[..., 0], a[..., 1], a[..., 2]]
    else:
        r, g, b = a[..., 0], a[..., 1], a[..., 2]
        planes = [0.299 * r + 0.587 * g + 0.114 * b, -0.168736 * r - 0.331264 * g + 0.5 * b + 128,
                  0.5 * r - 0.418688 * g - 0.081312 * b + 128]
    H, W = planes[0].shape
    hmax, vmax = max(s[0] for s in sampling), max(s[1] for s in sampling)
    mcux, mcuy = -(-W // (8 * hmax)), -(-H // (8 * vmax))
    q = [max(1, int(round(v * quality_scale))) for v in
         [8, 6, 6, 7, 6, 5, 8, 7, 7, 7, 9, 9, 8, 10, 12, 20, 13, 12, 11, 11, 12, 25, 18, 19, 15, 20, 29, 26, 31, 30, 29,
          26, 28, 28, 32, 36, 46, 39, 32, 34, 44, 35, 28, 28, 40, 55, 41, 44, 48, 49, 52, 52, 52, 31, 39, 57, 61, 56,
          50, 60, 46, 51, 52, 50]]
    comps = []
    for p, (h, v) in zip(planes, sampling):
        pw, ph = mcux * 8 * hmax, mcuy * 8 * vmax
        p = np.pad(p, ((0, ph - H), (0, pw - W)), mode="edge")
        fx, fy = hmax // h, vmax // v
        comps.append(p.reshape(ph // fy, fy, pw // fx, fx).mean(axis=(1, 3)))
    ids = [ord("R"), ord("G"), ord("B")] if adobe_rgb else [1, 2, 3]
    out = bytearray(b"\xff\xd8")
    if adobe_rgb:
        out += seg(0xEE, b"Adobe" + bytes([0, 100, 0, 0, 0, 0, 0]))
    else:
        out += seg(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    out += seg(0xDB, bytes([0]) + bytes(q))
    out += seg(0xC4, bytes([0x00]) + bytes(DC_TABLE[0]) + bytes(DC_SYMS))
    out += seg(0xC4, bytes([0x10]) + bytes(AC_TABLE[0]) + bytes(AC_SYMS))
    sof = struct.pack(">BHHB", 8, H, W, len(planes))
    for i, (h, v) in enumerate(sampling):
        sof += bytes([ids[i], h << 4 | v, 0])
    out += seg(0xC0, sof)
    if restart:
        out += seg(0xDD, struct.pack(">H", restart))
    scans = [[i] for i in range(len(planes))] if per_component_scans else [list(range(len(planes)))]
    for sc in scans:
        out += seg(0xDA, bytes([len(sc)]) + b"".join(bytes([ids[i], 0x00]) for i in sc) + bytes([0, 63, 0]))
        bits, preds, n = Bits(), [0] * 3, 0
        if len(sc) == 1:
            c = comps[sc[0]]
            h, v = sampling[sc[0]]
            units = [[(sc[0], by, bx)] for by in range(-(-(-(-H * v // vmax)) // 8))
                     for bx in range(-(-(-(-W * h // hmax)) // 8))]
        else:
            units = [[(i, my * sampling[i][1] + y, mx * sampling[i][0] + x) for i in sc
                      for y in range(sampling[i][1]) for x in range(sampling[i][0])]
                     for my in range(mcuy) for mx in range(mcux)]
        for u in units:
            if restart and n and n % restart == 0:
                bits.flush()
                bits.out += bytes([0xFF, 0xD0 + (n // restart - 1) % 8])
                preds = [0] * 3
            for i, by, bx in u:
                preds[i] = encode_block(bits, comps[i][by * 8:by * 8 + 8, bx * 8:bx * 8 + 8], preds[i], q)
            n += 1
        bits.flush()
        out += bits.out
    out += b"\xff\xd9"
    return bytes(out)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if not f.startswith("ljt_") or os.path.isdir(LJT):
            os.remove(os.path.join(OUT, f))
    rgb = synthetic(48, 40, 1)
    odd = synthetic(17, 13, 2)
    write_ok("gray_baseline", pil_jpeg(rgb.convert("L"), quality=80))
    write_ok("rgb_444", pil_jpeg(rgb, quality=90, subsampling=0))
    write_ok("rgb_422", pil_jpeg(rgb, quality=85, subsampling=1))
    write_ok("rgb_420", pil_jpeg(rgb, quality=75, subsampling=2))
    write_ok("odd_17x13_420", pil_jpeg(odd, quality=75, subsampling=2))
    write_ok("odd_17x13_422", pil_jpeg(odd, quality=75, subsampling=1))
    write_ok("odd_17x13_gray", pil_jpeg(odd.convert("L"), quality=75))
    write_ok("tiny_3x2_420", pil_jpeg(synthetic(3, 2, 3), quality=75, subsampling=2))
    write_ok("tiny_1x1", pil_jpeg(synthetic(1, 1, 4), quality=75, subsampling=2))
    write_ok("q100_444", pil_jpeg(rgb, quality=100, subsampling=0))
    write_ok("q10_420", pil_jpeg(rgb, quality=10, subsampling=2))
    write_ok("optimized_420", pil_jpeg(rgb, quality=75, optimize=True))
    write_ok("progressive_420", pil_jpeg(rgb, quality=75, progressive=True))
    write_ok("progressive_444", pil_jpeg(odd, quality=95, progressive=True, subsampling=0))
    write_ok("progressive_gray", pil_jpeg(rgb.convert("L"), quality=75, progressive=True))
    exif = Image.Exif()
    exif[0x010F] = "satdifuser test"
    write_ok("exif_comment", pil_jpeg(rgb, quality=75, exif=exif.tobytes(), comment=b"a COM segment"))
    # the small encoder
    write_ok("restart_420", own_jpeg(rgb, [(2, 2), (1, 1), (1, 1)], restart=3))
    write_ok("restart_gray_1", own_jpeg(odd.convert("L"), [(1, 1)], restart=1))
    write_ok("sampling_411", own_jpeg(rgb, [(4, 1), (1, 1), (1, 1)]))
    write_ok("sampling_440", own_jpeg(rgb, [(1, 2), (1, 1), (1, 1)]))
    write_ok("sampling_31_odd", own_jpeg(odd, [(3, 1), (1, 1), (1, 1)], restart=2))
    write_ok("sampling_22_21", own_jpeg(odd, [(2, 2), (2, 1), (1, 1)]))
    write_ok("noninterleaved_420", own_jpeg(odd, [(2, 2), (1, 1), (1, 1)], per_component_scans=True, restart=2))
    write_ok("adobe_rgb", own_jpeg(rgb, [(1, 1), (1, 1), (1, 1)], adobe_rgb=True))
    write_ok("q1_clamp", own_jpeg(rgb, [(1, 1), (1, 1), (1, 1)], quality_scale=0.05))
    # real images
    if SHARED:
        for cid in ("id_000051", "id_000138"):
            naip = Image.open(f"{SHARED}/satellite/chesapeake/{cid}.rgb.png").convert("RGB")
            write_ok(f"naip_{cid}_q85_420", pil_jpeg(naip, quality=85))
        naip = Image.open(f"{SHARED}/satellite/chesapeake/id_000051.rgb.png").convert("RGB")
        write_ok("naip_id_000051_progressive", pil_jpeg(naip, quality=90, progressive=True, subsampling=1))
        kod = Image.open(f"{SHARED}/png/image-png-extra/kodim23.png").convert("RGB").crop((200, 100, 520, 340))
        write_ok("kodim23_crop_q92_420", pil_jpeg(kod, quality=92))
    # libjpeg-turbo's test images: two decodable, arithmetic-coded and 12-bit ones refused
    for f, kind in (("testorig.jpg", "ok"), ("testimgint.jpg", "ok"), ("testimgari.jpg", "refuse"),
                    ("monkey12.jpg", "refuse")):
        name = "ljt_" + f[:-4]
        if os.path.isdir(LJT):
            data = open(f"{LJT}/{f}", "rb").read()
            write_ok(name, data) if kind == "ok" else write_bad(name, data, kind)
        elif os.path.exists(f"{OUT}/{name}.jpg"):
            index.append((name + ".jpg", kind))
    # corrupt and unsupported files
    base = pil_jpeg(rgb, quality=75, subsampling=2)
    prog = pil_jpeg(rgb, quality=75, progressive=True)
    sos = base.index(b"\xff\xda")
    for frac in (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98):
        write_bad(f"bad_trunc_base_{int(frac * 100):02d}", base[:int(len(base) * frac)], "refuse")
        write_bad(f"bad_trunc_prog_{int(frac * 100):02d}", prog[:int(len(prog) * frac)], "refuse")
    sof = base.index(b"\xff\xc0")
    def patched(data, at, new):
        return data[:at] + new + data[at + len(new):]
    write_bad("bad_sof3_lossless", patched(base, sof, b"\xff\xc3"), "refuse")
    write_bad("bad_sof9_arith", patched(base, sof, b"\xff\xc9"), "refuse")
    write_bad("bad_sof5_hier", patched(base, sof, b"\xff\xc5"), "refuse")
    write_bad("bad_12bit", patched(base, sof + 4, b"\x0c"), "refuse")
    write_bad("bad_height0_dnl", patched(base, sof + 5, b"\x00\x00"), "refuse")
    write_bad("bad_huge_65535", patched(base, sof + 5, b"\xff\xff\xff\xff"), "refuse")
    write_bad("bad_sampling_0", patched(base, sof + 11, b"\x00"), "refuse")
    write_bad("bad_sampling_3x3", patched(base, sof + 14, b"\x33"), "refuse")
    write_bad("bad_seglen", patched(base, sof + 2, b"\xff\xf0"), "refuse")
    write_bad("bad_no_sos", base[:sos] + b"\xff\xd9", "refuse")
    write_bad("bad_soi_only", b"\xff\xd8\xff", "refuse")
    dht = base.index(b"\xff\xc4")
    write_bad("bad_dht_overfull", patched(base, dht + 5, bytes([4] + [0] * 15)), "refuse")
    write_bad("bad_dqt_missing", base.replace(b"\xff\xdb", b"\xff\xe5", 2), "refuse")
    cmyk = pil_jpeg(Image.new("CMYK", (16, 16), (10, 20, 30, 40)), quality=75)
    write_bad("bad_cmyk", cmyk, "refuse")
    rng = np.random.default_rng(7)
    for i in range(12):
        d = bytearray(base if i % 2 == 0 else prog)
        s = d.index(b"\xff\xda")
        for _ in range(1 + i):
            p = int(rng.integers(s + 14, len(d) - 2))
            d[p] ^= 1 << int(rng.integers(0, 8))
        write_bad(f"flip_{'prog' if i % 2 else 'base'}_{i:02d}", bytes(d), "any")
    with open(f"{OUT}/index.txt", "w") as f:
        f.write("# file expected-outcome (ok: pixels equal NAME.npy within the tolerance; refuse; any: no crash)\n")
        for name, kind in index:
            f.write(f"{name} {kind}\n")
    print(f"{len(index)} files in {OUT}")


if __name__ == "__main__":
    main()
