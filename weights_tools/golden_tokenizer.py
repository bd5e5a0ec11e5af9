"""A tiny but real CLIP byte-level BPE (vocab.json + merges.txt) for golden cases.

Layout as CLIP's own vocabulary (openai/CLIP simple_tokenizer.py): the 256 byte
symbols in bytes_to_unicode order (ids 0..255, "!" is id 0), the same 256 with
"</w>" (ids 256..511), one token per learned merge, then <|startoftext|> and
<|endoftext|>. Merges are learned here from a short English text with CLIP's
pre-tokenisation (lower case, CLIP's regex, words end in "</w>").
"""
import collections
import json

TRAIN_TEXT = """
A satellite image shows the surface of the earth seen from space. Satellites in orbit
take images of cities, rivers, forests, farmland, roads, buildings, lakes, mountains,
deserts, coasts and the sea. The images are used to map land cover, to monitor crops
and water, to count buildings, to detect changes after floods and fires, and to study
the climate. Each image has several bands of light: red, green, blue and near infrared.
A model learns features from many images and then it can classify the scene or segment
each pixel into a class such as water, forest, field, urban area, road or cloud.
The quick brown fox jumps over the lazy dog. This is a photo of a house with a garden,
a picture of a small town by the river, an aerial view of the green fields in summer,
and a high resolution image of the harbour with ships and boats. It was taken in the
morning when there were no clouds over the land and the light was good.
There are one hundred and twenty three images in the first set and many more in the
second set, which we will use for training, validation and testing of the network.
"""


def bytes_to_unicode():
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _words(text):
    import regex as re
    pat = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                     re.IGNORECASE)
    b2u = bytes_to_unicode()
    text = re.sub(r"\s+", " ", text).strip().lower()
    counts = collections.Counter()
    for tok in re.findall(pat, text):
        chars = [b2u[b] for b in tok.encode("utf-8")]
        word = tuple(chars[:-1]) + (chars[-1] + "</w>",)
        counts[word] += 1
    return counts


def learn_merges(text, n_merges):
    """Plain BPE training: repeatedly merge the most frequent adjacent pair
    (ties broken by the pair's text, so the result is deterministic)."""
    words = dict(_words(text))
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        a, b = best[0]
        merges.append((a, b))
        new = {}
        for w, c in words.items():
            out = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        words = new
    return merges


def build_vocab(n_merges=400):
    """Returns (vocab dict token -> id, vocab.json text, merges.txt text)."""
    merges = learn_merges(TRAIN_TEXT, n_merges)
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    for a, b in merges:
        tokens.append(a + b)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {}
    for t in tokens:
        if t not in vocab:
            vocab[t] = len(vocab)
    vocab_json = json.dumps(vocab, ensure_ascii=False)
    merges_txt = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    return vocab, vocab_json, merges_txt


def save_tokenizer_dir(d, vocab_json, merges_txt, pad_token):
    """A tokenizer folder as the SD checkpoints have it (tokenizer_config.json
    and special_tokens_map.json as in stabilityai/stable-diffusion-2-1 for
    pad "!", as in CompVis SD 1.x for pad <|endoftext|>)."""
    import os
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(vocab_json)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write(merges_txt)

    def tok(s):
        return {"__type": "AddedToken", "content": s, "lstrip": False, "normalized": True,
                "rstrip": False, "single_word": False}
    cfg = {"add_prefix_space": False, "bos_token": tok("<|startoftext|>"), "do_lower_case": True,
           "eos_token": tok("<|endoftext|>"), "errors": "replace", "model_max_length": 77,
           "pad_token": pad_token if pad_token == "!" else tok(pad_token),
           "tokenizer_class": "CLIPTokenizer", "unk_token": tok("<|endoftext|>")}
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    smap = {"bos_token": {k: v for k, v in tok("<|startoftext|>").items() if k != "__type"},
            "eos_token": {k: v for k, v in tok("<|endoftext|>").items() if k != "__type"},
            "pad_token": pad_token,
            "unk_token": {k: v for k, v in tok("<|endoftext|>").items() if k != "__type"}}
    with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
        json.dump(smap, f, indent=2)


def load_clip_tokenizer(d, use_ftfy):
    """transformers' slow CLIPTokenizer.from_pretrained(d) (as the SD pipelines
    load it). use_ftfy=False hides ftfy so that the constructor takes its
    BasicTokenizer fallback branch."""
    import sys
    from transformers import CLIPTokenizer
    saved = sys.modules.get("ftfy", "missing")
    if not use_ftfy:
        sys.modules["ftfy"] = None  # import ftfy -> ImportError
    try:
        tok = CLIPTokenizer.from_pretrained(d, local_files_only=True)
    finally:
        if saved == "missing":
            sys.modules.pop("ftfy", None)
        else:
            sys.modules["ftfy"] = saved
    assert (tok.fix_text is not None) == use_ftfy
    return tok


LONG_TEXT = ("A very long description of a satellite image: the scene shows a large city next to a river, "
             "with many roads, bridges, parks, green fields and small houses; in the north there are mountains "
             "covered with forest, in the south a lake and farmland with crops of different colours, and in the "
             "east the sea with a harbour, ships and boats. The image was taken in summer, in the morning, with "
             "no clouds at all, at a resolution of ten metres per pixel, by a satellite in a sun synchronous orbit.")

TEXTS_COMMON = [
    "A satellite image",
    "",
    "a SATELLITE Image of Farmland, near the river!!!",
    "Numbers: 12345 and 3.14159, 2024-06-01; 1,000,000 km2 ... 42%",
    "Accents: cafe\u0301 café, naïve, São Paulo, Zürich, Ångström, ÉCOLE",
    "Emoji \U0001F30D\U0001F6F0\ufe0f and symbols @#$%^&*()_+=[]{}|\\:;\"'<>,.?/~`",
    "several     spaces\tand\ttabs\nand\nnewlines  \r\n end  ",
    "contractions: it's, don't, WE'RE, they've, I'm, you'll, he'd, dogs'",
    "   leading and trailing spaces   ",
    "ALL CAPS SENTENCE WITH A HYPHENATED-WORD",
    "日本語のテキスト and 中文 mixed with Ελληνικά and русский",
    LONG_TEXT,
]

# Texts that ftfy.fix_text changes (mojibake, curly quotes, ligatures,
# full-width letters, HTML entities left alone by transformers' fix_text path).
TEXTS_FTFY_FIXES = [
    "mojibake: Ã©tÃ© and the sign â€” here",
    "curly \u201cquotes\u201d and \u2018single\u2019 ones",
    "ligatures \ufb01eld \ufb02ow, full-width \uff21\uff22\uff23 \uff11\uff12\uff13",
    "html &amp; entities &lt;b&gt; stay",
    "control\x07chars\x1band\u200bzero width\u00a0nbsp",
]

# Special-token strings inside the text: PreTrainedTokenizer.tokenize splits
# them out before BPE (from_pretrained registers them as no-split tokens).
TEXTS_SPECIAL = [
    "<|startoftext|>A satellite image<|endoftext|>",
    "an image <|endoftext|> of a river",
    "<|ENDOFTEXT|> upper case special",
    "!!! ! pad-like exclamation marks !",
]
