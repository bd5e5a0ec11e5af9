// splitmix64. See rng.h.
#include "core/rng.h"

#define SPLITMIX64_GAMMA 0x9E3779B97F4A7C15ull  // 2^64 / golden ratio

uint64_t splitmix64(uint64_t x) {
    x += SPLITMIX64_GAMMA;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t splitmix64_next(uint64_t *state) {
    uint64_t z = splitmix64(*state);
    *state += SPLITMIX64_GAMMA;
    return z;
}

double splitmix64_uniform(uint64_t *state) { return (double)(splitmix64_next(state) >> 11) * (1.0 / 9007199254740992.0); }
