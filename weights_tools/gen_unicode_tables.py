#!/usr/bin/python3
"""Writes src/models/unicode_tables.c: the Unicode data the CLIP tokenizer (src/models/bpe.c) needs.

Run with the Python that the reference tokenizer runs on (Debian 12: /usr/bin/python3 3.11.2, whose
unicodedata is Unicode 14.0.0, and python3-regex 2022.10.31, whose own tables are Unicode 15.0):

    /usr/bin/python3 weights_tools/gen_unicode_tables.py > src/models/unicode_tables.c

Every table is measured from the library that CLIPTokenizer itself calls, not from the Unicode files:
  - regex classes: which characters `[\\p{L}]`, `[\\p{N}]` and `[^\\s\\p{L}\\p{N}]` match with re.IGNORECASE,
    asked of the `regex` module one character at a time;
  - BasicTokenizer clean-up: unicodedata.category (C* dropped, Zs -> space) and str.isspace;
  - lower-casing: str.lower of each character, and the Cased / Case_Ignorable properties that
    str.lower's final-sigma rule uses, found by asking str.lower about "x" + char + "\\u03a3" strings;
  - NFC: unicodedata.decomposition, unicodedata.combining, and which pairs NFC recomposes;
  - ftfy 6.1.1 (CLIPTokenizer calls ftfy.fix_text when ftfy is installed): the character classes of
    its mojibake heuristic (ftfy.badness.BADNESS_RE, transcribed below as sequences of classes and
    checked against ftfy's own regex on random text) and of chardata.UTF8_DETECTOR_RE, the byte
    tables of its single-byte codecs, its HTML entities, ligatures and width map. ftfy is imported
    from /work/ref/ftfy (or wherever it is installed).
"""
import importlib.metadata
import sys
import unicodedata

import os
import random
import re

import regex

for _p in ("/work/ref/ftfy", os.path.join(os.path.dirname(__file__), "..", "..", "ref", "ftfy")):
    if os.path.isdir(_p) and _p not in sys.path:
        sys.path.append(_p)
import ftfy  # noqa: E402
import ftfy.bad_codecs  # noqa: E402,F401  (registers the sloppy-* and utf-8-variants codecs)
from ftfy import badness, chardata  # noqa: E402

MAX_CP = 0x110000


def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def breakpoints(values):
    """values: list over every code point -> [(start, value)] where the value changes."""
    out = []
    prev = None
    for cp in range(MAX_CP):
        v = values[cp]
        if v != prev:
            out.append((cp, v))
            prev = v
    return out


def emit_breakpoints(name, comment, bps):
    print(f"// {comment}")
    print(f"const UniBreak {name}[] = {{")
    line = "   "
    for start, v in bps:
        item = f" {{0x{start:X},{v}}},"
        if len(line) + len(item) > 118:
            print(line)
            line = "   "
        line += item
    print(line)
    print("};")
    print(f"const int {name}_count = {len(bps)};\n")


def main():
    # ---- regex classes (regex module, IGNORECASE) ----------------------------------------------
    p_letter = regex.compile(r"[\p{L}]", regex.IGNORECASE)
    p_number = regex.compile(r"[\p{N}]", regex.IGNORECASE)
    p_other = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
    rx = [0] * MAX_CP
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            rx[cp] = 3  # never reached: surrogates are invalid UTF-8 and rejected before
            continue
        c = chr(cp)
        l, n, o = bool(p_letter.match(c)), bool(p_number.match(c)), bool(p_other.match(c))
        assert l + n + o <= 1, hex(cp)
        rx[cp] = 1 if l else 2 if n else 3 if o else 0
    # The contractions and special tokens are matched case-insensitively: check our folding rule
    # (ASCII case, plus U+017F LATIN SMALL LETTER LONG S for s) against the module.
    for ch in "startofexndvml":
        p = regex.compile(ch, regex.IGNORECASE)
        got = {cp for cp in range(MAX_CP) if not is_surrogate(cp) and p.fullmatch(chr(cp))}
        want = {ord(ch), ord(ch.upper())} | ({0x17F} if ch == "s" else set())
        assert got == want, (ch, sorted(got))

    # ---- BasicTokenizer._clean_text and str.split --------------------------------------------------
    clean = [0] * MAX_CP
    for cp in range(MAX_CP):
        c = chr(cp)
        cat = unicodedata.category(c)
        if c in " \t\n\r" or cat == "Zs":
            clean[cp] = 2  # becomes " "
        elif cp == 0 or cp == 0xFFFD or cat.startswith("C"):
            clean[cp] = 1  # dropped
        elif c.isspace():
            clean[cp] = 3  # kept, but str.split() splits on it
        else:
            clean[cp] = 0

    # Python re / str classes (for ftfy's regexes and whitespace_clean's strip): 1 \w but not \d,
    # 2 \s, 3 \d (a decimal digit, also \w).
    pyclass = [0] * MAX_CP
    for cp in range(MAX_CP):
        c = chr(cp)
        if c.isdecimal():
            pyclass[cp] = 3
        elif c.isalnum() or c == "_":
            pyclass[cp] = 1
        elif c.isspace():
            pyclass[cp] = 2
    for cp in range(0, MAX_CP, 7):  # the same as re's \w, \s and \d
        if is_surrogate(cp):
            continue
        c = chr(cp)
        w, sp, d = bool(re.match(r"\w", c)), bool(re.match(r"\s", c)), bool(re.match(r"\d", c))
        assert (pyclass[cp] in (1, 3)) == w and (pyclass[cp] == 2) == sp and (pyclass[cp] == 3) == d, hex(cp)
    regex_space = [cp for cp in range(MAX_CP) if not is_surrogate(cp) and regex.match(r"\s", chr(cp))]

    # ---- lower-casing -----------------------------------------------------------------------------
    pairs = []
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            continue
        low = chr(cp).lower()
        if low == chr(cp):
            continue
        if len(low) != 1:
            assert cp == 0x130 and low == "i\u0307", hex(cp)  # handled in the C code
            continue
        if cp == 0x3A3:
            continue  # capital sigma: final-sigma rule in the C code
        pairs.append((cp, ord(low) - cp))
    assert "\u03a3".lower() == "\u03c3" and "a\u03a3".lower() == "a\u03c2"
    runs = []  # (start, count, stride, delta)
    i = 0
    while i < len(pairs):
        start, delta = pairs[i]
        count, stride = 1, 0
        if i + 1 < len(pairs) and pairs[i + 1][1] == delta and pairs[i + 1][0] - start in (1, 2):
            stride = pairs[i + 1][0] - start
            while i + count < len(pairs) and pairs[i + count] == (start + count * stride, delta):
                count += 1
        runs.append((start, count, stride or 1, delta))
        i += count

    # Final sigma: str.lower maps U+03A3 to U+03C2 when a Cased character precedes it (skipping
    # Case_Ignorable ones) and none follows. Measured per character:
    #   cased and not ignorable:  "1" + c + SIGMA  -> final
    #   ignorable (or cased):     "a" + c + SIGMA  -> final
    case_prop = [0] * MAX_CP
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            continue
        c = chr(cp)
        f1 = ("1" + c + "\u03a3").lower()[-1] == "\u03c2"
        f2 = ("a" + c + "\u03a3").lower()[-1] == "\u03c2"
        case_prop[cp] = 1 if f1 else 2 if f2 else 0
    # Cross-check the following-context side with the same classes.
    for cp in range(0, MAX_CP, 7):
        if is_surrogate(cp):
            continue
        c = chr(cp)
        final_after = ("a\u03a3" + c).lower()[1] == "\u03c2"
        want = case_prop[cp] == 2 or case_prop[cp] == 0
        assert final_after == want, hex(cp)

    # ---- NFC --------------------------------------------------------------------------------------
    ccc = [unicodedata.combining(chr(cp)) if not is_surrogate(cp) else 0 for cp in range(MAX_CP)]
    decomps = []  # (cp, first, second or 0, composes)
    for cp in range(MAX_CP):
        if is_surrogate(cp) or 0xAC00 <= cp <= 0xD7A3:
            continue  # Hangul syllables are algorithmic
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert 1 <= len(parts) <= 2, hex(cp)
        composes = 0
        if len(parts) == 2:
            nfd = unicodedata.normalize("NFD", chr(cp))
            composes = 1 if unicodedata.normalize("NFC", nfd) == chr(cp) else 0
        decomps.append((cp, parts[0], parts[1] if len(parts) == 2 else 0, composes))

    # ---- output -----------------------------------------------------------------------------------
    print("// Generated by weights_tools/gen_unicode_tables.py: do not edit.")
    print(f"// Python {sys.version.split()[0]}, unicodedata {unicodedata.unidata_version}, "
          f"regex {importlib.metadata.version('regex')}, ftfy {ftfy.__version__}.")
    print('#include "models/unicode_tables.h"\n')
    emit_breakpoints("uni_regex_class", "CLIPTokenizer's regex classes (regex module, IGNORECASE): "
                     "0 none of them (\\s, and U+0345), 1 [\\p{L}], 2 [\\p{N}], 3 [^\\s\\p{L}\\p{N}]",
                     breakpoints(rx))
    emit_breakpoints("uni_clean_class", "BasicTokenizer clean-up (unicodedata categories): "
                     "0 keep, 1 drop (C*, U+FFFD), 2 to space (Zs, \\t\\n\\r), 3 keep but str.split splits",
                     breakpoints(clean))
    emit_breakpoints("uni_case_prop", "str.lower final-sigma context: 0 neither, 1 Cased (not Case_Ignorable), "
                     "2 Case_Ignorable", breakpoints(case_prop))
    emit_breakpoints("uni_ccc", "Canonical_Combining_Class", breakpoints(ccc))
    emit_breakpoints("uni_py_class", "Python's re / str classes: 0 none, 1 \\w not \\d, 2 \\s, 3 \\d (also \\w)",
                     breakpoints(pyclass))
    print("// The regex module's \\s (whitespace_clean's \\s+).")
    print("const uint32_t uni_regex_space[] = {" + ",".join(f"0x{cp:X}" for cp in regex_space) + "};")
    print(f"const int uni_regex_space_count = {len(regex_space)};\n")

    print("// str.lower: code points start, start+stride, ... (count of them) map to cp + delta.")
    print("// Not here: U+0130 (-> i U+0307) and U+03A3 (final sigma).")
    print("const UniLowerRun uni_lower_runs[] = {")
    line = "   "
    for start, count, stride, delta in runs:
        item = f" {{0x{start:X},{count},{stride},{delta}}},"
        if len(line) + len(item) > 118:
            print(line)
            line = "   "
        line += item
    print(line)
    print("};")
    print(f"const int uni_lower_runs_count = {len(runs)};\n")

    print("// Canonical decompositions (Hangul syllables excluded: algorithmic), sorted by code point.")
    print("// composes: 1 if NFC recomposes the pair into cp (a primary composite).")
    print("const UniDecomp uni_decomp[] = {")
    line = "   "
    for cp, a, b, composes in decomps:
        item = f" {{0x{cp:X},0x{a:X},0x{b:X},{composes}}},"
        if len(line) + len(item) > 118:
            print(line)
            line = "   "
        line += item
    print(line)
    print("};")
    print(f"const int uni_decomp_count = {len(decomps)};")
    emit_ftfy()


# ---- ftfy -------------------------------------------------------------------------------------------
# Pseudo-classes the C code computes itself (too large for the table): Python re's \s (str.isspace),
# \w (str.isalnum or "_"), [^A-Za-z], and "." (anything but "\n").
COMPUTED = {"\\s": 124, "\\w": 125, "[^A-Za-z]": 126, ".": 127}


def badness_alternatives():
    """ftfy.badness.BADNESS_RE as a list of (anchored, [class, ...]), each class a regex class string."""
    c = {k: v for k, v in badness.MOJIBAKE_CATEGORIES.items()}

    def k(fmt):
        return "[" + fmt.format(**c) + "]"
    alts = [
        [k("{c1}")],
        [k("{bad}{lower_accented}{upper_accented}{box}{start_punctuation}{end_punctuation}{currency}{numeric}"),
         k("{bad}")],
        ["[a-zA-Z]", k("{lower_common}{upper_common}"), k("{bad}")],
        [k("{bad}"), k("{lower_accented}{upper_accented}{box}{start_punctuation}{end_punctuation}{currency}{numeric}")],
        [k("{lower_accented}{lower_common}{box}{end_punctuation}{currency}{numeric}"), k("{upper_accented}")],
        [k("{box}{end_punctuation}{currency}{numeric}"), k("{lower_accented}")],
        [k("{lower_accented}{box}{end_punctuation}"), k("{currency}")],
        ["\\s", k("{upper_accented}"), k("{currency}")],
        [k("{upper_accented}{box}"), k("{numeric}")],
        [k("{lower_accented}{upper_accented}{box}{currency}{end_punctuation}"), k("{start_punctuation}"), k("{numeric}")],
        [k("{lower_accented}{upper_accented}{currency}{numeric}{box}"), k("{end_punctuation}"), k("{start_punctuation}")],
        [k("{currency}{numeric}{box}"), k("{start_punctuation}")],
        ["[a-z]", k("{upper_accented}"), k("{start_punctuation}{currency}")],
        [k("{box}"), k("{kaomoji}")],
        [k("{lower_accented}{upper_accented}{currency}{numeric}{start_punctuation}{end_punctuation}"), k("{box}")],
        [k("{box}"), k("{end_punctuation}")],
        [k("{lower_accented}{upper_accented}"), k("{end_punctuation}"), "\\w"],
        ["[Œœ]", "[^A-Za-z]"],
        ["[ÂÃÎÐ]", k("€Šš¢£Ÿž\xa0\xad®©°·»{start_punctuation}{end_punctuation}–—´")],
        ["[×]", "[²³]"],
        ["[ØÙ]", k("{common}{currency}{bad}{numeric}{start_punctuation}ŸŠ®°µ»"),
         "[ØÙ]", k("{common}{currency}{bad}{numeric}{start_punctuation}ŸŠ®°µ»")],
        ["[à]", "[²µ¹¼½¾]"],
        ["[√]", "[±∂†≠®™´≤≥¥µø]"],
        ["[≈]", "[°¢]"],
        ["[‚]", "[Ä]", "[ìîïòôúùû†°¢π]"],
        ["[‚]", "[âó]", "[àä°ê]"],
        ["[в]", "[Ђ]"],
        ["[ВГРС]", k("{c1}{bad}{start_punctuation}{end_punctuation}{currency}°µ"), "[ВГРС]"],
        ["[Г]", "[ў]", "[В]", "[Ђ]", "[В]", ".", "[A-Za-z ]"],
        ["[Ã]", "[\xa0¡]"],
        ["[a-z]", "[ÃÂ]", "[ ]"],
        ["[a-z]", "\\s", "[ÃÂ]", "[ ]"],   # [a-z]\s?[ÃÂ][ ] is these two
        ["^", "[ÃÂ]", "[ ]"],
        [k("a-z.,?!{end_punctuation}"), "[Â]", k(" {start_punctuation}{end_punctuation}")],
        ["[β]", "[€]", "[™\xa0Ά\xad®°]"],
        ["[ΒΓΞΟ]", k("{c1}{bad}{start_punctuation}{end_punctuation}{currency}°"), "[ΒΓΞΟ]"],
    ]
    out = []
    for a in alts:
        anchored = a[0] == "^"
        out.append((anchored, a[1:] if anchored else a))
    return out


def check_badness(alts, rng):
    """Our transcription must find mojibake exactly where ftfy's BADNESS_RE does."""
    mine = re.compile("|".join(("^" if anch else "") + "".join(cl) for anch, cl in alts))
    pool = set()
    for v in badness.MOJIBAKE_CATEGORIES.values():
        pool.update(ch for ch in re.findall(".", v, re.S))
    for lo, hi in (("\x80", "\x9f"), ("Ò", "Ö"), ("Ù", "Ü"), ("ò", "ö"), ("ø", "ü"), ("\xc0", "\xd1"), ("\xe0", "\xf1"),
                   ("Α", "Ω"), ("Ё", "Я"), ("α", "ω"), ("а", "џ"), ("═", "╬")):
        pool.update(chr(x) for x in range(ord(lo), ord(hi) + 1))
    pool.update("ÂÃÎÐŒœ×²³ØÙàµ¹¼½¾√±∂†≠®™´≤≥¥ø≈°¢‚ÄìîïòôúùûπâóäêвЂВГРСўβ€ΆΒΓΞΟ\xa0\xad¡aZz.,?! \n\t_1é")
    pool = sorted(pool)
    for n in range(300000):
        t = "".join(rng.choice(pool) for _ in range(rng.randint(1, 7)))
        assert bool(mine.search(t)) == badness.is_bad(t), repr(t)


def emit_ftfy():
    rng = random.Random(1234)
    alts = badness_alternatives()
    check_badness(alts, rng)
    clues = chardata.UTF8_CLUES
    utf8_classes = {name: "[" + clues[name] + "]" for name in
                    ("utf8_first_of_2", "utf8_first_of_3", "utf8_first_of_4", "utf8_continuation",
                     "utf8_continuation_strict")}
    # UTF8_DETECTOR_RE must still be what chardata.py builds from these clues.
    want = re.compile(r"(?<!{s})({f2}{c}|{f3}{c}{{2}}|{f4}{c}{{3}})+".format(
        s=utf8_classes["utf8_continuation_strict"], f2=utf8_classes["utf8_first_of_2"],
        f3=utf8_classes["utf8_first_of_3"], f4=utf8_classes["utf8_first_of_4"], c=utf8_classes["utf8_continuation"]))
    # Table classes: every distinct class string, numbered in order of first use.
    names = []
    for _, cl in alts:
        for x in cl:
            if x not in COMPUTED and x not in names:
                names.append(x)
    names += [v for v in utf8_classes.values() if v not in names]
    assert len(names) <= 124, len(names)
    idx = {n: i for i, n in enumerate(names)}
    idx.update(COMPUTED)
    masks = {}
    for i, n in enumerate(names):
        rx = re.compile(n)
        for cp in range(0x10000):  # every class holds BMP characters only (checked below)
            if rx.fullmatch(chr(cp)):
                masks[cp] = masks.get(cp, 0) | (1 << i)
    for n in names:
        body = n[1:-1]
        assert max(ord(ch) for ch in body) < 0x10000
    pmap = {ord(ch) for ch in "".join(utf8_classes.values())}
    assert pmap  # (silences linters)
    # Random strings: the detector regex we rebuilt agrees with ftfy's.
    pool = sorted({chr(cp) for cp in masks} | set("abc \n"))
    for _ in range(100000):
        t = "".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
        a = [m.span() for m in want.finditer(t)]
        b = [m.span() for m in chardata.UTF8_DETECTOR_RE.finditer(t)]
        assert a == b, repr(t)

    print("\n// ---- ftfy 6.1.1 --------------------------------------------------------------------------")
    print("// Character classes of ftfy's mojibake regexes: bit i of mask = class i below (numbered in the")
    print("// generator); classes 124-127 are computed in C: \\\\s, \\\\w, [^A-Za-z], . (not newline).")
    for i, n in enumerate(names):
        label = n if len(n) < 60 else n[:57] + "...]"
        print(f"//   {i:2d} {label.encode('ascii', 'backslashreplace').decode()}")
    print("const UniFtfyClass uni_ftfy_class[] = {")
    line = "   "
    for cp in sorted(masks):
        m = masks[cp]
        item = f" {{0x{cp:X},{{0x{m & 0xFFFFFFFFFFFFFFFF:X},0x{m >> 64:X}}}}},"
        if len(line) + len(item) > 118:
            print(line)
            line = "   "
        line += item
    print(line)
    print("};")
    print(f"const int uni_ftfy_class_count = {len(masks)};\n")

    print("// ftfy.badness.BADNESS_RE: is_bad(text) is true when any of these sequences of classes occurs")
    print("// (anchored: only at the start of the text).")
    print("const UniFtfyAlt uni_ftfy_bad_alts[] = {")
    for anch, cl in alts:
        ids = ",".join(str(idx[x]) for x in cl)
        print(f"    {{{len(cl)}, {1 if anch else 0}, {{{ids}}}}},")
    print("};")
    print(f"const int uni_ftfy_bad_alts_count = {len(alts)};\n")
    print("// chardata.UTF8_DETECTOR_RE: (?<![cont_strict])([first2][cont]|[first3][cont]{2}|[first4][cont]{3})+")
    print(f"const int uni_ftfy_utf8_first2 = {idx[utf8_classes['utf8_first_of_2']]}, "
          f"uni_ftfy_utf8_first3 = {idx[utf8_classes['utf8_first_of_3']]}, "
          f"uni_ftfy_utf8_first4 = {idx[utf8_classes['utf8_first_of_4']]},")
    print(f"          uni_ftfy_utf8_cont = {idx[utf8_classes['utf8_continuation']]}, "
          f"uni_ftfy_utf8_cont_strict = {idx[utf8_classes['utf8_continuation_strict']]};\n")

    # Single-byte codecs: chardata.CHARMAP_ENCODINGS in ftfy's order, then strict windows-1252.
    encs = list(chardata.CHARMAP_ENCODINGS) + ["windows-1252"]
    assert len(encs) == 10
    print("// Byte -> code point of ftfy's single-byte codecs (0x110000: undefined), in the order ftfy tries them:")
    print("// " + ", ".join(encs) + ".")
    print("const uint32_t uni_ftfy_charmap[10][256] = {")
    for enc in encs:
        row = []
        for b in range(256):
            try:
                ch = bytes([b]).decode(enc)
                assert len(ch) == 1
                row.append(ord(ch))
            except UnicodeDecodeError:
                row.append(0x110000)
        vals = [v for v in row if v != 0x110000]
        assert len(vals) == len(set(vals)), enc
        assert all(row[b] == b for b in range(0x80) if b != 0x1A), enc
        # possible_encoding(text, enc) must be "every character decodes from some byte but 0x1A's ASCII".
        for cp in (list(range(0x100)) + vals) if enc in chardata.CHARMAP_ENCODINGS else []:
            allowed = (cp <= 0x19 or 0x1B <= cp <= 0x7F) or cp in {row[b] for b in list(range(0x80, 0x100)) + [0x1A]}
            assert chardata.possible_encoding(chr(cp), enc) == allowed, (enc, hex(cp))
        print(f"    {{ // {enc}")
        for k in range(0, 256, 16):
            print("        " + ",".join(f"0x{v:X}" for v in row[k:k + 16]) + ",")
        print("    },")
    print("};\n")

    # HTML entities (chardata.HTML_ENTITIES), as "name\\0value\\0" records, names sorted.
    print("// chardata.HTML_ENTITIES that HTML_ENTITY_RE can match: \"&name;\" NUL value NUL, ..., sorted by")
    print("// name; an empty name ends the list.")
    print("const char uni_ftfy_html_entities[] =")

    def c_string(text):
        # Raw UTF-8 for visible characters; 3-digit octal escapes of the UTF-8 bytes for the rest.
        out = ""
        for ch in text:
            if ch in '"\\?' or unicodedata.category(ch)[0] in "CZ":
                out += "".join(f"\\{b:03o}" for b in ch.encode("utf-8"))
            else:
                out += ch
        return out
    line = "   "
    for name in sorted(chardata.HTML_ENTITIES):
        if not chardata.HTML_ENTITY_RE.fullmatch(name):
            continue  # too long for HTML_ENTITY_RE: never looked up
        item = f' "{name}\\000{c_string(chardata.HTML_ENTITIES[name])}\\000"'
        if len(line) + len(item) > 110:
            print(line)
            line = "   "
        line += item
    print(line + ' "";\n')

    # Ligatures and character widths (fix_latin_ligatures then fix_character_width; disjoint domains).
    tr = {}
    for cp, v in chardata.LIGATURES.items():
        tr[cp] = v
    for cp, v in chardata.WIDTH_MAP.items():
        assert cp not in tr
        tr[cp] = v
    for cp, v in tr.items():
        assert 1 <= len(v) <= 3 and all(ord(ch) not in tr for ch in v)
    print("// chardata.LIGATURES and chardata.WIDTH_MAP: cp -> up to 3 code points (0 = none), sorted.")
    print("const UniFtfyMap uni_ftfy_translate[] = {")
    line = "   "
    for cp in sorted(tr):
        v = [ord(ch) for ch in tr[cp]] + [0, 0]
        item = f" {{0x{cp:X},{{0x{v[0]:X},0x{v[1]:X},0x{v[2]:X}}}}},"
        if len(line) + len(item) > 118:
            print(line)
            line = "   "
        line += item
    print(line)
    print("};")
    print(f"const int uni_ftfy_translate_count = {len(tr)};")


if __name__ == "__main__":
    main()
