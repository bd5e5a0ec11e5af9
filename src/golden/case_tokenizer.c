// Golden handler for module "tokenizer": CLIPTokenizer on the case's vocab.json and merges.txt.
// config: texts, pad_token, model_max_length (77), text_cleaning ("ftfy" or "basic"; "ftfy" when
// absent, transformers' choice when ftfy is installed), bos/eos/unk_token (must be CLIP's).
// Compares output.input_ids (N, max_length); ids are exact (the case's tolerance is 0).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "golden/golden.h"
#include "models/bpe.h"

static int check_special(const JsonValue *config, const char *key, const char *want) {
    const char *got;
    if (json_get_string(config, key, want, &got)) return SD_FAIL;
    if (strcmp(got, want) != 0)
        return sd_errorf("config '%s' is '%s': only CLIP's '%s' is supported", key, got, want);
    return 0;
}

int golden_case_tokenizer(GoldenCase *gc) {
    const JsonValue *texts = json_get(gc->config, "texts");
    if (!texts || texts->type != JSON_ARRAY) return sd_errorf("config: 'texts' must be an array of strings");
    const char *pad, *cleaning;
    int max_length;
    if (json_get_string(gc->config, "pad_token", CLIP_EOS_TOKEN, &pad) ||
        json_get_int(gc->config, "model_max_length", CLIP_MAX_LENGTH, &max_length) ||
        json_get_string(gc->config, "text_cleaning", "ftfy", &cleaning) ||
        check_special(gc->config, "bos_token", CLIP_BOS_TOKEN) || check_special(gc->config, "eos_token", CLIP_EOS_TOKEN) ||
        check_special(gc->config, "unk_token", CLIP_EOS_TOKEN))
        return sd_error_context("config");
    if (max_length < 2 || max_length > 100000) return sd_errorf("config: model_max_length %d out of range", max_length);
    ClipTokenizer tok;
    char vocab[4096], merges[4096];
    if (clip_tokenizer_load(&tok, golden_path(gc, "vocab.json", vocab, sizeof(vocab)),
                            golden_path(gc, "merges.txt", merges, sizeof(merges)), pad))
        return SD_FAIL;
    if (strcmp(cleaning, "ftfy") == 0) tok.cleaning = CLIP_CLEAN_FTFY;
    else if (strcmp(cleaning, "basic") == 0) tok.cleaning = CLIP_CLEAN_BASIC;
    else {
        clip_tokenizer_free(&tok);
        return sd_errorf("config: text_cleaning '%s' is not 'ftfy' or 'basic'", cleaning);
    }
    const int n = texts->count;
    int64_t *ids = (int64_t *)malloc((size_t)(n ? n : 1) * (size_t)max_length * sizeof(int64_t));
    float *got = (float *)malloc((size_t)(n ? n : 1) * (size_t)max_length * sizeof(float));
    int rc = 0;
    if (!ids || !got) rc = sd_errorf("out of memory");
    for (int i = 0; rc == 0 && i < n; i++) {
        if (texts->items[i].type != JSON_STRING) {
            rc = sd_errorf("config: texts[%d] is not a string", i);
            break;
        }
        rc = clip_tokenize(&tok, texts->items[i].string, max_length, ids + (size_t)i * max_length);
        if (rc) sd_error_context("texts[%d]", i);
        else if (gc->verbose) {
            printf("    texts[%d]:", i);
            for (int k = 0; k < max_length; k++) printf(" %lld", (long long)ids[(size_t)i * max_length + k]);
            printf("\n");
        }
    }
    if (rc == 0) {
        // Ids up to 2^24 are exact in float32.
        for (size_t k = 0; k < (size_t)n * max_length; k++) got[k] = (float)ids[k];
        const int shape[2] = {n, max_length};
        golden_check(gc, "output.input_ids", got, 2, shape);
    }
    free(ids);
    free(got);
    clip_tokenizer_free(&tok);
    return rc;
}
