// The CLIP tokenizer: transformers' CLIPTokenizer (4.31, the "slow" Python one) as SD pipelines load it
// with from_pretrained, on the checkpoint's tokenizer/vocab.json and merges.txt:
//
//   text (UTF-8) -> split on the special tokens (bos, eos, unk, pad) -> clean-up of each piece
//   (BasicTokenizer: drop control characters, whitespace to spaces, spaces around CJK ideographs,
//   NFC, split on whitespace, lower-case) -> CLIP's regex pre-tokenizer -> byte-level BPE with
//   "</w>" on the last symbol of each word -> ids; then [bos] + ids[:max_length-2] + [eos], padded to
//   max_length with the pad token.
//
// docs/text-encoder.md gives every rule and the limits.
#ifndef SD_BPE_H
#define SD_BPE_H

#include <stdint.h>

#include "models/unicode.h"

#define CLIP_BOS_TOKEN "<|startoftext|>"
#define CLIP_EOS_TOKEN "<|endoftext|>"  // also the unknown token
#define CLIP_MAX_LENGTH 77
// CLIPTokenizer reads at most this many merges (49152 - 256 - 2), whatever the file holds.
#define CLIP_MAX_MERGES 48894

// A string -> int map (open addressing). Keys are owned copies.
typedef struct {
    char **keys;
    int *values;
    uint32_t capacity;  // a power of two
    uint32_t count;
} BpeStrMap;

// CLIPTokenizer cleans text one of two ways, chosen by whether `import ftfy` works where it runs:
//   CLIP_CLEAN_BASIC: without ftfy (SatDiFuser's requirements.txt does not list it): BasicTokenizer.
//   CLIP_CLEAN_FTFY:  with ftfy 6.1: whitespace_clean(ftfy.fix_text(text)).lower() (ftfy.h).
typedef enum { CLIP_CLEAN_BASIC = 0, CLIP_CLEAN_FTFY = 1 } ClipTextCleaning;

typedef struct {
    ClipTextCleaning cleaning;  // CLIP_CLEAN_BASIC after loading; set it before tokenizing to change
    BpeStrMap vocab;   // token -> id, from vocab.json
    BpeStrMap ranks;   // "first second" -> merge rank, from merges.txt
    int vocab_size;    // len(vocab.json)
    // The special tokens, which the text is split on before anything else (no-split tokens).
    char *special[4];  // bos, eos, unk, pad (duplicates removed)
    int special_id[4];
    // Whitespace stripped from the text next to the token: strip_left removes it from the end of the
    // text before the token, strip_right from the start of the text after it. transformers strips
    // both sides of a special token given as a plain string (SD 2.x's pad "!"), and neither side of
    // CLIP's bos/eos/unk (AddedToken(lstrip=False, rstrip=False)).
    int strip_left[4], strip_right[4];
    int n_special;
    int bos_id, eos_id, unk_id, pad_id;
    char byte_char[256][3];  // bytes_to_unicode(): byte -> UTF-8 of its stand-in character
    UniNfc nfc;              // NFC's composition table (both clean-ups end with NFC)
} ClipTokenizer;

// Loads vocab.json and merges.txt. pad_token: "!" for SD 2.x, "<|endoftext|>" for SD 1.x, or NULL
// for CLIPTokenizer's default ("<|endoftext|>"); a pad token other than bos/eos is taken as a plain
// string (whitespace around it stripped, as SD 2.x's special_tokens_map.json gives "!"). A special
// token missing from the vocabulary gets the next free id, as transformers adds it. Returns 0, or -1
// with a message naming the file.
int clip_tokenizer_load(ClipTokenizer *tok, const char *vocab_json, const char *merges_txt, const char *pad_token);

// Loads <dir>/vocab.json and <dir>/merges.txt. pad_token NULL: read from <dir>/special_tokens_map.json,
// else <dir>/tokenizer_config.json ("pad_token", a string or {"content": ..., "lstrip": ..., "rstrip":
// ...}), else the default.
// *max_length (may be NULL) receives tokenizer_config.json's model_max_length, else 77.
int clip_tokenizer_load_dir(ClipTokenizer *tok, const char *dir, const char *pad_token, int *max_length);

void clip_tokenizer_free(ClipTokenizer *tok);

// tokenizer(text, padding="max_length", truncation=True, max_length=max_length).input_ids:
// exactly max_length ids (max_length >= 2). Text that is not valid UTF-8 is an error.
int clip_tokenize(const ClipTokenizer *tok, const char *text, int max_length, int64_t *ids);

// The token ids of text without bos/eos/padding (tokenizer.encode(text, add_special_tokens=False)),
// at most `limit` of them (the first ones; limit < 0: all). *ids is malloc'd (free it); *n gets the count.
int clip_tokenize_raw(const ClipTokenizer *tok, const char *text, int limit, int **ids, int *n);

// Id of a vocabulary entry, -1 if absent.
int clip_token_id(const ClipTokenizer *tok, const char *token);

#endif
