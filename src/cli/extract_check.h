// extract --check: what a feature folder lacks for a given extract command, without computing.
#ifndef SD_CLI_EXTRACT_CHECK_H
#define SD_CLI_EXTRACT_CHECK_H

#include "io/feature_cache.h"

// For the names i with i mod shard_n == shard_k: OUT/<name>.safetensors is done (whole, made
// with the settings `expect` records), missing, half-written (only a <file>.tmp.<pid> of a
// stopped or running writer) or made with other settings / broken (the reason printed).
// Prints one line per image that is not done and a summary; returns 0 when all are done, else 1.
int extract_check(const char *out, const char *const *names, int n, int shard_k, int shard_n,
                  const FeatureMeta *expect);

#endif
