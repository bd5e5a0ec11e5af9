#include "train/init.h"

#include <math.h>
#include <string.h>

// xorshift64* uniform in [0, 1) and Box-Muller normals: a fixed seeded stream.
static double next_uniform(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

static double next_normal(uint64_t *s) {
    double u1 = next_uniform(s), u2 = next_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

// "a.b.bias" and "a.b.weight" belong to the same layer "a.b".
static int same_layer(const char *bias, const char *weight) {
    size_t nb = strlen(bias) - 5, nw = strlen(weight);
    return nw == nb + 7 && strncmp(bias, weight, nb) == 0 && strcmp(weight + nb, ".weight") == 0;
}

// Fan-in of the layer a bias belongs to: the weight registered just before it.
static int64_t fan_in_of(const Param *w) {
    int64_t f = 1;
    for (int d = 1; d < w->ndim; d++) f *= w->shape[d];
    return f;
}

void head_init_weights(ParamSet *ps, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    if (!s) s = 1;
    const Param *last_weight = NULL;
    for (int k = 0; k < ps->count; k++) {
        Param *p = ps->items[k];
        if (p->kind != PARAM_WEIGHT) continue;  // running stats keep (0, 1), counters 0
        int detectron = strstr(p->name, "bottleneck_layers.") || strstr(p->name, ".experts.") ||
                        !strncmp(p->name, "experts.", 8);
        if (p->ndim >= 2) {  // conv or linear weight
            last_weight = p;
            if (detectron && p->ndim == 4) {
                int64_t fan_out = (int64_t)p->shape[0] * p->shape[2] * p->shape[3];
                double std = sqrt(2.0 / (double)fan_out);
                for (int64_t i = 0; i < p->numel; i++) p->data[i] = (float)(std * next_normal(&s));
            } else {
                double bound = 1.0 / sqrt((double)fan_in_of(p));
                for (int64_t i = 0; i < p->numel; i++) p->data[i] = (float)(bound * (2.0 * next_uniform(&s) - 1.0));
            }
        } else if (ends_with(p->name, ".bias") && last_weight && same_layer(p->name, last_weight->name)) {
            double bound = 1.0 / sqrt((double)fan_in_of(last_weight));
            for (int64_t i = 0; i < p->numel; i++) p->data[i] = (float)(bound * (2.0 * next_uniform(&s) - 1.0));
        }
        // norm weights (1), norm biases (0), mixing weights (1), temperature: as constructed
    }
}
