// splitmix64 (Steele, Lea, Flood 2014; the generator Java's SplittableRandom and
// xoshiro's seeding use): the one definition every seeded stream in the library
// draws from (Dropout2d masks, the VAE's counter-based normals).
#ifndef SD_RNG_H
#define SD_RNG_H

#include <stdint.h>

// The mixing function of x + 0x9E3779B97F4A7C15: a stateless hash of a counter.
uint64_t splitmix64(uint64_t x);
// The sequence: returns splitmix64(*state), then *state += 0x9E3779B97F4A7C15.
uint64_t splitmix64_next(uint64_t *state);
// The top 53 bits of splitmix64_next as a double in [0, 1).
double splitmix64_uniform(uint64_t *state);

#endif
