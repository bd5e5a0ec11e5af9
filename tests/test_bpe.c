// CLIP tokenizer tests. No Python: the expected ids come either from the hand-made vocabulary in
// tests/data/bpe (each derived by hand below) or, when ../shared/data/clip is present, from the ids
// transformers' CLIPTokenizer gave for its 30 texts (tokenizer_cases.json, made by the data collector).
#include "tests/test_util.h"

#include <stdint.h>

#include "core/error.h"
#include "io/json.h"
#include "models/bpe.h"

#define BOS 10
#define EOS 11  // also the unknown token
#define BPE_DIR "tests/data/bpe"

// Tokenizes text and compares the ids between bos and eos (and checks the padding) with want[0..n).
static void expect(const ClipTokenizer *tok, const char *what, const char *text, const int *want, int n) {
    int64_t ids[CLIP_MAX_LENGTH];
    if (clip_tokenize(tok, text, CLIP_MAX_LENGTH, ids)) {
        CHECK(0, "%s: %s", what, sd_last_error());
        return;
    }
    int ok = ids[0] == tok->bos_id && ids[n + 1] == tok->eos_id;
    for (int i = 0; i < n; i++) ok = ok && ids[i + 1] == want[i];
    for (int i = n + 2; i < CLIP_MAX_LENGTH; i++) ok = ok && ids[i] == tok->pad_id;
    CHECK(ok, "%s: got %lld %lld %lld %lld %lld %lld ...", what, (long long)ids[0], (long long)ids[1], (long long)ids[2],
          (long long)ids[3], (long long)ids[4], (long long)ids[5]);
}

static void test_hand_made(void) {
    ClipTokenizer tok;
    if (clip_tokenizer_load(&tok, BPE_DIR "/vocab.json", BPE_DIR "/merges.txt", "!")) {
        CHECK(0, "load: %s", sd_last_error());
        return;
    }
    CHECK(tok.bos_id == BOS && tok.eos_id == EOS && tok.unk_id == EOS && tok.pad_id == 0, "special ids");
    // "abc" -> a b c</w>; lowest rank (a b) = 0 -> ab c</w>; (ab c</w>) = 1 -> abc</w> = 9.
    expect(&tok, "abc", "abc", (const int[]){9}, 1);
    // "ab" -> a b</w>; (a b</w>) = rank 4 -> ab</w> = 8.
    expect(&tok, "ab", "ab", (const int[]){8}, 1);
    // "ba" -> b a</w>: no merge -> b = 2, a</w> = 4.
    expect(&tok, "ba", "ba", (const int[]){2, 4}, 2);
    // "bc" -> (b c</w>) = 2 -> bc</w>, not in the vocabulary -> unknown = 11.
    expect(&tok, "bc unknown", "bc", (const int[]){EOS}, 1);
    // "cab" -> c a b</w> -> c ab</w> = 3, 8.
    expect(&tok, "cab", "cab", (const int[]){3, 8}, 2);
    // "abab" -> a b a b</w>; (a b) = 0 merges the first pair only (the second b is b</w>) -> ab a b</w>;
    // then (a b</w>) = 4 -> ab ab</w> = 7, 8.
    expect(&tok, "abab", "abab", (const int[]){7, 8}, 2);
    // Lower case; whitespace runs separate words.
    expect(&tok, "case and spaces", "  A \t\n B  ", (const int[]){4, 5}, 2);
    // The pad token "!" is cut out of the text before anything else: a ! b -> 4, 0, 5.
    expect(&tok, "pad token in text", "a!b", (const int[]){4, 0, 5}, 3);
    expect(&tok, "pad tokens", "a !!", (const int[]){4, 0, 0}, 3);
    // "it's": the regex makes "it" and "'s" (a contraction, not "'" then "s"): i t</w> = 12, 13 and
    // ' s</w> = 14, 15 (a lone "'" would be '</w> = 16).
    expect(&tok, "contraction", "it's", (const int[]){12, 13, 14, 15}, 4);
    expect(&tok, "upper-case contraction", "IT'S", (const int[]){12, 13, 14, 15}, 4);
    // Numbers are single-digit pre-tokens: 1</w> = 17, 2</w> = 18.
    expect(&tok, "digits", "12", (const int[]){17, 18}, 2);
    // e-acute is UTF-8 C3 A9 -> byte symbols U+00C3 and U+00A9 -> "Ã" = 19, "©</w>" = 20; the decomposed
    // form e + U+0301 is NFC-composed first.
    expect(&tok, "e-acute", "\xc3\xa9", (const int[]){19, 20}, 2);
    expect(&tok, "e + combining acute", "e\xcc\x81", (const int[]){19, 20}, 2);
    // The special strings: cut out when exact, and matched by the regex (then mapped to their ids)
    // after lower-casing.
    expect(&tok, "literal bos", "<|startoftext|>", (const int[]){BOS}, 1);
    expect(&tok, "upper-case bos", "<|STARTOFTEXT|>", (const int[]){BOS}, 1);
    expect(&tok, "unknown byte", "x", (const int[]){EOS}, 1);
    expect(&tok, "empty", "", NULL, 0);
    // Basic clean-up: "Ã©" lower-cases to "ã©": "ã" (L) = C3 A3 -> "Ã" 19 + "£</w>" unknown; "©" (other)
    // = C2 A9 -> "Â" unknown + "©</w>" 20.
    expect(&tok, "mojibake, basic", "\xc3\x83\xc2\xa9", (const int[]){19, EOS, EOS, 20}, 4);
    // "&amp;" without ftfy: "&" -> &</w> unknown; "amp" -> a m p</w> = 1, unk, unk; ";" -> unknown.
    expect(&tok, "entity, basic", "&amp;", (const int[]){EOS, 1, EOS, EOS, EOS}, 5);

    // With ftfy: the mojibake is repaired to e-acute, the entity unescaped, the curly quote uncurled.
    tok.cleaning = CLIP_CLEAN_FTFY;
    expect(&tok, "mojibake, ftfy", "\xc3\x83\xc2\xa9", (const int[]){19, 20}, 2);
    expect(&tok, "entity, ftfy", "&amp;", (const int[]){EOS}, 1);
    expect(&tok, "curly quote, ftfy", "it\xe2\x80\x99s", (const int[]){12, 13, 14, 15}, 4);
    expect(&tok, "contraction, ftfy", "IT'S", (const int[]){12, 13, 14, 15}, 4);
    tok.cleaning = CLIP_CLEAN_BASIC;

    // Truncation keeps the first max_length - 2 tokens: [bos, a, a, a, eos].
    int64_t ids[5];
    CHECK(clip_tokenize(&tok, "a a a a a", 5, ids) == 0 && ids[0] == BOS && ids[1] == 4 && ids[2] == 4 && ids[3] == 4 &&
              ids[4] == EOS,
          "truncation to 5");
    CHECK(clip_tokenize(&tok, "a", 1, ids) != 0, "max_length 1 rejected");
    // Text that is not UTF-8.
    const char *bad[] = {"\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80"};
    for (int i = 0; i < 6; i++) {
        int64_t tmp[CLIP_MAX_LENGTH];
        CHECK(clip_tokenize(&tok, bad[i], CLIP_MAX_LENGTH, tmp) != 0 && strstr(sd_last_error(), "UTF-8"),
              "invalid UTF-8 #%d: '%s'", i, sd_last_error());
    }
    CHECK(clip_token_id(&tok, "abc</w>") == 9 && clip_token_id(&tok, "zz") == -1, "clip_token_id");
    clip_tokenizer_free(&tok);

    // SD 1.x: the pad token is the end token; "!" is then ordinary text: "!</w>" unknown.
    if (clip_tokenizer_load(&tok, BPE_DIR "/vocab.json", BPE_DIR "/merges.txt", CLIP_EOS_TOKEN) == 0) {
        CHECK(tok.pad_id == EOS, "SD1 pad id");
        expect(&tok, "! as text", "a!b", (const int[]){4, EOS, 5}, 3);
        clip_tokenizer_free(&tok);
    }

    // A folder: special_tokens_map.json's pad "!" overrides tokenizer_config.json; model_max_length 7.
    int max_length = 0;
    if (clip_tokenizer_load_dir(&tok, BPE_DIR, NULL, &max_length) == 0) {
        int64_t seven[7];
        CHECK(max_length == 7 && tok.pad_id == 0, "load_dir: max_length %d pad %d", max_length, tok.pad_id);
        CHECK(clip_tokenize(&tok, "a", max_length, seven) == 0 && seven[0] == BOS && seven[1] == 4 && seven[2] == EOS &&
                  seven[3] == 0 && seven[6] == 0,
              "load_dir tokenize");
        clip_tokenizer_free(&tok);
    } else {
        CHECK(0, "load_dir: %s", sd_last_error());
    }
    CHECK(clip_tokenizer_load(&tok, BPE_DIR "/missing.json", BPE_DIR "/merges.txt", "!") != 0 &&
              strstr(sd_last_error(), "missing.json"),
          "missing vocab named: '%s'", sd_last_error());
}

static const char *shared_clip_dir(void) {
    static const char *candidates[] = {"/work/shared/data/clip", "../shared/data/clip"};
    for (int i = 0; i < 2; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/tokenizer_cases.json", candidates[i]);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            return candidates[i];
        }
    }
    return NULL;
}

// The real 49408-token vocabulary: CLIPTokenizer's ids for 30 texts, with pad "!" (SD 2.x) and pad
// <|endoftext|> (SD 1.x), both made without ftfy (BasicTokenizer clean-up).
static void test_shared_cases(void) {
    const char *dir = shared_clip_dir();
    if (!dir) {
        printf("SKIP test_bpe: ../shared/data/clip not found\n");
        return;
    }
    char path[512], vocab[512], merges[512];
    snprintf(path, sizeof(path), "%s/tokenizer_cases.json", dir);
    snprintf(vocab, sizeof(vocab), "%s/vocab.json", dir);
    snprintf(merges, sizeof(merges), "%s/merges.txt", dir);
    JsonValue root;
    if (json_parse_file(path, &root)) {
        CHECK(0, "%s", sd_last_error());
        return;
    }
    const JsonValue *texts = json_get(&root, "texts"), *cases = json_get(&root, "cases");
    int total = 0, matched = 0;
    for (int c = 0; cases && c < cases->count; c++) {
        const JsonValue *cs = &cases->items[c];
        const char *pad = NULL;
        json_get_string(cs, "pad_token", NULL, &pad);
        const JsonValue *want = json_get(cs, "ids");
        ClipTokenizer tok;
        if (!pad || !want || clip_tokenizer_load(&tok, vocab, merges, pad)) {
            CHECK(0, "case %d: %s", c, sd_last_error());
            continue;
        }
        for (int t = 0; t < texts->count && t < want->count; t++) {
            int64_t ids[CLIP_MAX_LENGTH];
            int ok = clip_tokenize(&tok, texts->items[t].string, CLIP_MAX_LENGTH, ids) == 0 &&
                     want->items[t].count == CLIP_MAX_LENGTH;
            for (int k = 0; ok && k < CLIP_MAX_LENGTH; k++) ok = want->items[t].items[k].number == (double)ids[k];
            CHECK(ok, "shared case pad '%s', text %d '%.40s'", pad, t, texts->items[t].string);
            total++;
            matched += ok;
        }
        clip_tokenizer_free(&tok);
    }
    printf("shared CLIPTokenizer cases: %d of %d match\n", matched, total);
    json_free(&root);

    // Self-consistency on the real vocabulary: NFC and final sigma.
    ClipTokenizer tok;
    if (clip_tokenizer_load(&tok, vocab, merges, "!")) return;
    int64_t a[CLIP_MAX_LENGTH], b[CLIP_MAX_LENGTH], c[CLIP_MAX_LENGTH];
    for (int mode = 0; mode < 2; mode++) {
        tok.cleaning = mode ? CLIP_CLEAN_FTFY : CLIP_CLEAN_BASIC;
        clip_tokenize(&tok, "caf\xc3\xa9", CLIP_MAX_LENGTH, a);
        clip_tokenize(&tok, "cafe\xcc\x81", CLIP_MAX_LENGTH, b);
        CHECK(memcmp(a, b, sizeof(a)) == 0, "NFC: composed and decomposed e-acute differ (mode %d)", mode);
        // str.lower: ODOS (capital sigma at the end of a word) -> final sigma U+03C2.
        clip_tokenize(&tok, "\xce\x9f\xce\x94\xce\x9f\xce\xa3", CLIP_MAX_LENGTH, a);
        clip_tokenize(&tok, "\xce\xbf\xce\xb4\xce\xbf\xcf\x82", CLIP_MAX_LENGTH, b);
        clip_tokenize(&tok, "\xce\xbf\xce\xb4\xce\xbf\xcf\x83", CLIP_MAX_LENGTH, c);
        CHECK(memcmp(a, b, sizeof(a)) == 0 && memcmp(a, c, sizeof(a)) != 0, "final sigma (mode %d)", mode);
    }
    clip_tokenizer_free(&tok);
}

int main(void) {
    test_hand_made();
    test_shared_cases();
    return test_report("test_bpe");
}
