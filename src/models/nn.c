// Weight loading and the small layers (see nn.h).
#include "models/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/fused.h"

// The compute precision of the calling thread's model loads (nn.h): per thread, so that two host
// threads loading models at once (each with its own satdifuser.h context) cannot change each
// other's. OpenMP threadprivate: thread-local storage (see core/error.c). Starts at NN_F32.
static int g_precision = NN_F32;
#pragma omp threadprivate(g_precision)

int nn_set_precision(int precision) {
    if (precision == NN_BF16 && !gemm_bf16_supported())
        return sd_errorf("bf16 compute needs AVX512_BF16 with the AVX-512 path in use (x86-64) or FEAT_BF16 with the "
                         "NEON path (arm64); this CPU or path has neither (--precision f16 halves the weights' "
                         "memory on any CPU)");
    if (precision != NN_F32 && precision != NN_BF16 && precision != NN_F16)
        return sd_errorf("nn_set_precision: unknown precision %d", precision);
    g_precision = precision;
    return 0;
}

int nn_precision(void) { return g_precision; }

int nn_precision_parse(const char *name, const char *what) {
    if (name && !strcmp(name, "f32")) return NN_F32;
    if (name && !strcmp(name, "bf16")) return NN_BF16;
    if (name && !strcmp(name, "f16")) return NN_F16;
    return sd_errorf("%s '%s': expected f32, bf16 or f16", what, name ? name : "");
}

const char *nn_precision_name(int precision) {
    return precision == NN_BF16 ? "bf16" : precision == NN_F16 ? "f16" : "f32";
}

static int meta_int(const SafeTensors *st, const char *key) {
    const char *v = st_metadata(st, key);
    return v ? atoi(v) : 0;
}

void nn_weights_init(NnWeights *w, const SafeTensors *st, const char *prefix) {
    memset(w, 0, sizeof(*w));
    w->st = st;
    w->bf16 = nn_precision() == NN_BF16;
    w->f16 = nn_precision() == NN_F16;
    snprintf(w->prefix, sizeof(w->prefix), "%s", prefix ? prefix : "");
    // a packed model file says which layout its panels have (models/pack.c)
    w->pack_mr = meta_int(st, "pack.mr");
    w->pack_nr = meta_int(st, "pack.nr");
    w->pack_kc = meta_int(st, "pack.kc");
    const char *precision = st_metadata(st, "pack.precision");
    w->pack_f16 = precision && !strcmp(precision, "f16");
    const GemmKernelInfo *ki = gemm_kernel_info();
    const char *isa = st_metadata(st, "pack.isa");
    w->pack_same = isa && !strcmp(isa, ki->name) && w->pack_mr == ki->mr && w->pack_nr == ki->nr && w->pack_kc == ki->kc;
}

void nn_weights_free(NnWeights *w) {
    for (int i = 0; i < w->n_loaded; i++) tensor_free(w->loaded[i]);
    for (int i = 0; i < w->n_loaded; i++) free(w->loaded_names[i]);
    for (int i = 0; i < w->n_packed; i++) free(w->packed_names[i]);
    free(w->loaded_names);
    free(w->packed_names);
    w->loaded_names = w->packed_names = NULL;
    free(w->loaded);
    w->loaded = NULL;
    w->n_loaded = w->cap_loaded = 0;
    for (int i = 0; i < w->n_packed; i++) gemm_packed_weights_free(w->packed[i]);
    free(w->packed);
    w->packed = NULL;
    w->n_packed = w->cap_packed = 0;
    for (int i = 0; i < w->n_packed_bf16; i++) gemm_bf16_packed_free(w->packed_bf16[i]);
    free(w->packed_bf16);
    w->packed_bf16 = NULL;
    w->n_packed_bf16 = w->cap_packed_bf16 = 0;
}

// Every packed weight is remembered (with its name) so that nn_weights_free releases it.
static int remember_packed(NnWeights *w, GemmPackedWeights *pw, const char *name) {
    if (w->n_packed == w->cap_packed) {
        int cap = w->cap_packed ? 2 * w->cap_packed : 256;
        GemmPackedWeights **l = (GemmPackedWeights **)realloc(w->packed, (size_t)cap * sizeof(*l));
        char **names = (char **)realloc(w->packed_names, (size_t)cap * sizeof(*names));
        if (l) w->packed = l;
        if (names) w->packed_names = names;
        if (!l || !names) {
            gemm_packed_weights_free(pw);
            return sd_errorf("out of memory loading weights");
        }
        w->cap_packed = cap;
    }
    w->packed_names[w->n_packed] = strdup(name);
    w->packed[w->n_packed++] = pw;
    return w->packed_names[w->n_packed - 1] ? 0 : sd_errorf("out of memory loading weights");
}

static int remember_packed_bf16(NnWeights *w, Bf16Packed *p) {
    if (w->n_packed_bf16 == w->cap_packed_bf16) {
        int cap = w->cap_packed_bf16 ? 2 * w->cap_packed_bf16 : 256;
        Bf16Packed **l = (Bf16Packed **)realloc(w->packed_bf16, (size_t)cap * sizeof(*l));
        if (!l) {
            gemm_bf16_packed_free(p);
            return sd_errorf("out of memory loading weights");
        }
        w->packed_bf16 = l;
        w->cap_packed_bf16 = cap;
    }
    w->packed_bf16[w->n_packed_bf16++] = p;
    return 0;
}

// Packs rows x K weights for the precision in use: f32 panels (pw), f16 panels (pw, NN_F16) or
// bf16 (pb). packed_name: the name the panels have in a packed model file.
static int pack_for_precision(NnWeights *w, const float *data, GemmPackedWeights *pw, Bf16Packed *pb, int rows, int K,
                              int as_b, const char *packed_name) {
    if (w->bf16) {
        if (gemm_bf16_pack_weights(pb, data, rows, K, as_b ? GEMM_BF16_BT : GEMM_BF16_A)) return SD_FAIL;
        return remember_packed_bf16(w, pb);
    }
    if (w->f16) {
        if (gemm_pack_weights_f16(pw, data, rows, K, as_b))
            return sd_error_context("%s: '%s' in f16 (--precision f16)", w->st->path, packed_name);
        return remember_packed(w, pw, packed_name);
    }
    if (gemm_pack_weights(pw, data, rows, K, as_b)) return SD_FAIL;
    return remember_packed(w, pw, packed_name);
}

// Packs a loaded weight t (viewed as rows x K) for the GEMM, then releases t: a view's pages of
// the file mapping are dropped (they come back from the file if read again), an owned copy is freed.
static int pack_weight(NnWeights *w, Tensor *t, GemmPackedWeights *pw, Bf16Packed *pb, int rows, int K, int as_b) {
    char packed_name[NN_NAME_MAX + 8];
    snprintf(packed_name, sizeof(packed_name), "%s.packed", w->loaded_names[w->n_loaded - 1]);
    if (pack_for_precision(w, t->data, pw, pb, rows, K, as_b, packed_name)) return SD_FAIL;
    if (!t->owns_data) st_release_pages(w->st, t->data, (size_t)rows * K * sizeof(float));
    tensor_free(t);
    memset(t, 0, sizeof(*t));
    return 0;
}

// prefix + name into buf (NN_NAME_MAX bytes); a name that does not fit is cut (and then not found).
static const char *full_name(const NnWeights *w, const char *name, char *buf) {
    size_t np = strlen(w->prefix), nn = strlen(name);
    if (np > NN_NAME_MAX - 1) np = NN_NAME_MAX - 1;
    if (nn > NN_NAME_MAX - 1 - np) nn = NN_NAME_MAX - 1 - np;
    memcpy(buf, w->prefix, np);
    memcpy(buf + np, name, nn);
    buf[np + nn] = '\0';
    return buf;
}

int nn_weights_has(const NnWeights *w, const char *name) {
    char buf[NN_NAME_MAX], packed[NN_NAME_MAX + 16];
    if (st_find(w->st, full_name(w, name, buf))) return 1;
    if (!w->pack_kc) return 0;
    snprintf(packed, sizeof(packed), "%s.packed", buf);  // a weight of a packed model file
    if (st_find(w->st, packed)) return 1;
    snprintf(packed, sizeof(packed), "%s.packed.0", buf);
    return st_find(w->st, packed) != NULL;
}

// A weight with NaN/Inf (a corrupt or bit-flipped file) would turn every feature into NaN without a word.
static int check_finite(const NnWeights *w, const char *full, Tensor *t) {
    int64_t n = tensor_numel(t), bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !isfinite(t->data[i]);
    if (!bad) return 0;
    tensor_free(t);
    return sd_errorf("%s: tensor '%s' has %lld NaN/Inf values", w->st->path, full, (long long)bad);
}

static int remember(NnWeights *w, Tensor *t, const char *full_name) {
    if (w->n_loaded == w->cap_loaded) {
        int cap = w->cap_loaded ? 2 * w->cap_loaded : 256;
        Tensor **l = (Tensor **)realloc(w->loaded, (size_t)cap * sizeof(Tensor *));
        char **names = (char **)realloc(w->loaded_names, (size_t)cap * sizeof(*names));
        if (l) w->loaded = l;
        if (names) w->loaded_names = names;
        if (!l || !names) {
            tensor_free(t);
            return sd_errorf("out of memory loading weights");
        }
        w->cap_loaded = cap;
    }
    w->loaded_names[w->n_loaded] = strdup(full_name);
    w->loaded[w->n_loaded++] = t;
    return w->loaded_names[w->n_loaded - 1] ? 0 : sd_errorf("out of memory loading weights");
}

// The panels "<full>" of a packed model file as rows x K weights (as_b as gemm_pack_weights):
// used in place when the file has the layout of the kernel set in use and its panels' precision
// is the one in use (f32 panels for NN_F32, f16 panels for NN_F16), else read back from the file's
// layout and packed again (f32 panels serve every precision; f16 panels only NN_F16: their
// weights are already rounded, an f32 or bf16 run would not be what it says). *found = 0 (and
// nothing done) when the file has no such entry.
static int load_from_pack(NnWeights *w, const char *full, GemmPackedWeights *pw, Bf16Packed *pb, int rows, int K,
                          int as_b, int *found) {
    *found = 0;
    if (!w->pack_kc) return 0;
    const StEntry *e = st_find(w->st, full);
    if (!e) return 0;
    *found = 1;
    int width = as_b ? w->pack_nr : w->pack_mr;
    DType want = w->pack_f16 ? DT_F16 : DT_F32;
    if (width <= 0 || e->dtype != want || (size_t)e->numel != gemm_packed_floats(rows, K, width))
        return sd_errorf("%s: '%s' is not %d x %d %s weights in panels of %d (%s, %lld values)", w->st->path, full, rows,
                         K, dtype_name(want), width, dtype_name(e->dtype), (long long)e->numel);
    if (w->pack_f16 && !w->f16)
        return sd_errorf("%s holds f16 weights (packed with --precision f16): run it with --precision f16, or pack the "
                         "model folder again for %s compute",
                         w->st->path, w->bf16 ? "bf16" : "f32");
    if (w->pack_same && !w->bf16 && w->f16 == w->pack_f16 && ((uintptr_t)e->data % 64) == 0) {
        if (w->f16) gemm_packed_weights_view_f16(pw, (const uint16_t *)(const void *)e->data, rows, K, as_b);
        else gemm_packed_weights_view(pw, (const float *)(const void *)e->data, rows, K, as_b);
        return remember_packed(w, pw, full);
    }
    // another kernel set's layout (or bf16 compute): back to rows x K, then packed for this one
    GemmPackedWeights file = {0};
    file.rows = rows, file.K = K, file.width = width, file.kc = w->pack_kc, file.as_b = as_b;
    file.padded_rows = (rows + width - 1) / width * width;
    size_t esize = (size_t)dtype_size(e->dtype);
    float *tmp = (float *)malloc((size_t)rows * K * sizeof(float));
    void *panels = malloc((size_t)e->numel * esize);
    if (!tmp || !panels) { free(tmp); free(panels); return sd_errorf("out of memory repacking '%s'", full); }
    memcpy(panels, e->data, (size_t)e->numel * esize);  // the mapping may not be aligned
    if (w->pack_f16) file.half = (uint16_t *)panels;  // f16 read back exactly (widened), rounded again: the same
    else file.data = (float *)panels;
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < K; p++) tmp[(size_t)r * K + p] = gemm_packed_at(&file, r, p);
    free(panels);
    int rc = pack_for_precision(w, tmp, pw, pb, rows, K, as_b, full);
    free(tmp);
    w->pack_repacked++;
    return rc;
}

int nn_weights_load(NnWeights *w, const char *name, int ndim, const int *shape, Tensor *t) {
    char buf[NN_NAME_MAX];
    if (st_load(w->st, full_name(w, name, buf), ndim, shape, t)) return SD_FAIL;
    if (check_finite(w, buf, t)) return SD_FAIL;
    return remember(w, t, buf);
}

int nn_weights_load_as(NnWeights *w, const char *name, int ndim, const int *shape, Tensor *t) {
    char buf[NN_NAME_MAX];
    const StEntry *e;
    full_name(w, name, buf);
    if (st_require(w->st, buf, &e)) return SD_FAIL;
    int64_t want = 1;
    for (int i = 0; i < ndim; i++) want *= shape[i];
    if (e->numel != want) {
        // Let st_load produce the standard message naming both shapes.
        return st_load(w->st, buf, ndim, shape, t);
    }
    if (st_load(w->st, buf, 0, NULL, t)) return SD_FAIL;
    if (check_finite(w, buf, t)) return SD_FAIL;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    return remember(w, t, buf);
}

// The weight `name` ("conv_in.weight") from a packed model file's "<prefix><name><suffix>"
// (suffix ".packed", or ".packed.0" / ".packed.1" for halves); *found = 0 if it is not one.
static int from_pack(NnWeights *w, const char *name, const char *suffix, GemmPackedWeights *pw, Bf16Packed *pb,
                     int rows, int K, int as_b, int *found) {
    char full[NN_NAME_MAX], packed[NN_NAME_MAX + 16];
    snprintf(packed, sizeof(packed), "%s%s", full_name(w, name, full), suffix);
    return load_from_pack(w, packed, pw, pb, rows, K, as_b, found);
}

static int load_bias(NnWeights *w, const char *name, int n, int has_bias, Tensor *t) {
    memset(t, 0, sizeof(*t));
    if (!has_bias) return 0;
    char buf[NN_NAME_MAX];
    snprintf(buf, sizeof(buf), "%s.bias", name);
    return nn_weights_load(w, buf, 1, &n, t);
}

int nn_linear_load(NnWeights *w, NnLinear *l, const char *name, int in, int out, int has_bias) {
    memset(l, 0, sizeof(*l));  // the packed fields say which path runs
    char buf[NN_NAME_MAX];
    int shape[2] = {out, in};
    l->in = in;
    l->out = out;
    snprintf(buf, sizeof(buf), "%s.weight", name);
    int found;
    if (from_pack(w, buf, ".packed", &l->packed, &l->bf16, out, in, 1, &found)) return SD_FAIL;
    if (!found && (nn_weights_load(w, buf, 2, shape, &l->weight) || pack_weight(w, &l->weight, &l->packed, &l->bf16, out, in, 1)))
        return SD_FAIL;
    return load_bias(w, name, out, has_bias, &l->bias);
}

int nn_linear_load_conv1x1(NnWeights *w, NnLinear *l, const char *name, int in, int out, int has_bias) {
    memset(l, 0, sizeof(*l));  // the packed fields say which path runs
    char buf[NN_NAME_MAX];
    int shape[4] = {out, in, 1, 1};
    l->in = in;
    l->out = out;
    snprintf(buf, sizeof(buf), "%s.weight", name);
    int found;
    if (from_pack(w, buf, ".packed", &l->packed, &l->bf16, out, in, 1, &found)) return SD_FAIL;
    if (!found) {
        if (nn_weights_load(w, buf, 4, shape, &l->weight)) return SD_FAIL;
        l->weight.ndim = 2;  // same memory, seen as (out, in)
        l->weight.shape[2] = l->weight.shape[3] = 0;
        if (pack_weight(w, &l->weight, &l->packed, &l->bf16, out, in, 1)) return SD_FAIL;
    }
    return load_bias(w, name, out, has_bias, &l->bias);
}

int nn_linear_load_any(NnWeights *w, NnLinear *l, const char *name, int in, int out, int has_bias) {
    memset(l, 0, sizeof(*l));  // the packed fields say which path runs
    char buf[NN_NAME_MAX];
    int shape[2] = {out, in};
    l->in = in;
    l->out = out;
    snprintf(buf, sizeof(buf), "%s.weight", name);
    int found;
    if (from_pack(w, buf, ".packed", &l->packed, &l->bf16, out, in, 1, &found)) return SD_FAIL;
    if (!found && (nn_weights_load_as(w, buf, 2, shape, &l->weight) || pack_weight(w, &l->weight, &l->packed, &l->bf16, out, in, 1)))
        return SD_FAIL;
    return load_bias(w, name, out, has_bias, &l->bias);
}

int nn_linear_load_halves(NnWeights *w, NnLinear *first, NnLinear *second, const char *name, int in, int out) {
    char buf[NN_NAME_MAX];
    int shape[2] = {2 * out, in};
    Tensor whole;
    memset(first, 0, sizeof(*first));
    memset(second, 0, sizeof(*second));
    first->in = second->in = in;
    first->out = second->out = out;
    char full[NN_NAME_MAX], name0[NN_NAME_MAX + 16], name1[NN_NAME_MAX + 16];
    snprintf(buf, sizeof(buf), "%s.weight", name);
    int found0, found1;
    if (from_pack(w, buf, ".packed.0", &first->packed, &first->bf16, out, in, 1, &found0) ||
        from_pack(w, buf, ".packed.1", &second->packed, &second->bf16, out, in, 1, &found1))
        return SD_FAIL;
    if (found0 != found1) return sd_errorf("%s: only one half of '%s' is packed", w->st->path, buf);
    if (!found0) {
        if (st_load(w->st, full_name(w, buf, full), 2, shape, &whole)) return SD_FAIL;
        if (check_finite(w, full, &whole)) return SD_FAIL;
        snprintf(name0, sizeof(name0), "%s.packed.0", full);
        snprintf(name1, sizeof(name1), "%s.packed.1", full);
        // both halves packed from the one loaded tensor, which is then released as pack_weight does
        int rc = pack_for_precision(w, whole.data, &first->packed, &first->bf16, out, in, 1, name0) ||
                 pack_for_precision(w, whole.data + (int64_t)out * in, &second->packed, &second->bf16, out, in, 1, name1);
        if (!rc && !whole.owns_data) st_release_pages(w->st, whole.data, (size_t)2 * out * in * sizeof(float));
        tensor_free(&whole);
        if (rc) return SD_FAIL;
    }
    // the bias (2*out) belongs to `first`; `second` views its upper half
    if (load_bias(w, name, 2 * out, 1, &first->bias)) return SD_FAIL;
    second->bias = tensor_view(first->bias.data + out, 1, &out);
    return 0;
}

int nn_conv2d_load(NnWeights *w, NnConv2d *c, const char *name, int cin, int cout, int kernel, Conv2dGeometry geom,
                   int has_bias) {
    memset(c, 0, sizeof(*c));  // the packed fields say which path runs
    char buf[NN_NAME_MAX];
    int shape[4] = {cout, cin, kernel, kernel};
    c->cin = cin;
    c->cout = cout;
    c->geom = geom;
    snprintf(buf, sizeof(buf), "%s.weight", name);
    int found, K = cin * kernel * kernel;
    if (from_pack(w, buf, ".packed", &c->packed, &c->bf16, cout, K, 0, &found)) return SD_FAIL;
    if (!found && (nn_weights_load(w, buf, 4, shape, &c->weight) || pack_weight(w, &c->weight, &c->packed, &c->bf16, cout, K, 0)))
        return SD_FAIL;
    return load_bias(w, name, cout, has_bias, &c->bias);
}

static int load_affine(NnWeights *w, const char *name, int n, Tensor *weight, Tensor *bias) {
    char buf[NN_NAME_MAX];
    snprintf(buf, sizeof(buf), "%s.weight", name);
    if (nn_weights_load(w, buf, 1, &n, weight)) return SD_FAIL;
    return load_bias(w, name, n, 1, bias);
}

int nn_groupnorm_load(NnWeights *w, NnGroupNorm *g, const char *name, int channels, int groups, float eps) {
    if (groups <= 0 || channels % groups != 0)
        return sd_errorf("%s: GroupNorm of %d channels cannot have %d groups", name, channels, groups);
    g->channels = channels;
    g->groups = groups;
    g->eps = eps;
    return load_affine(w, name, channels, &g->weight, &g->bias);
}

int nn_layernorm_load(NnWeights *w, NnLayerNorm *l, const char *name, int dim, float eps) {
    l->dim = dim;
    l->eps = eps;
    return load_affine(w, name, dim, &l->weight, &l->bias);
}

int nn_linear(const NnLinear *l, const float *x, float *y, int rows) {
    if (l->bf16.data) return linear_forward_bf16(x, &l->bf16, l->bias.data, y, rows);
    linear_forward_packed(x, l->in, &l->packed, l->bias.data, y, rows);
    return 0;
}

int nn_linear_channels_first(const NnLinear *l, const float *x, float *y, int rows) {
    if (l->bf16.data) return linear_forward_bf16_cf(x, &l->bf16, l->bias.data, y, rows);
    linear_forward_packed_cf(x, &l->packed, l->bias.data, y, rows);
    return 0;
}

void nn_conv2d_out_size(const NnConv2d *c, int H, int W, int *Ho, int *Wo) {
    *Ho = conv_out_size(H, c->geom.kernel_h, c->geom.stride, c->geom.pad_top, c->geom.pad_bottom);
    *Wo = conv_out_size(W, c->geom.kernel_w, c->geom.stride, c->geom.pad_left, c->geom.pad_right);
}

int nn_conv2d(const NnConv2d *c, const float *x, int N, int H, int W, float *y) {
    if (c->bf16.data) return conv2d_forward_bf16(x, N, c->cin, H, W, &c->bf16, c->bias.data, c->cout, c->geom, y);
    conv2d_forward_packed(x, N, c->cin, H, W, &c->packed, c->bias.data, c->cout, c->geom, y);
    return 0;
}

void nn_groupnorm(const NnGroupNorm *g, const float *x, float *y, int N, int HW) {
    groupnorm_forward(x, y, g->weight.data, g->bias.data, N, g->channels, HW, g->groups, g->eps);
}

void nn_groupnorm_silu(const NnGroupNorm *g, const float *x, float *y, const float *channel_bias, int N, int HW) {
    groupnorm_silu_forward(x, y, g->weight.data, g->bias.data, channel_bias, N, g->channels, HW, g->groups, g->eps);
}

void nn_layernorm(const NnLayerNorm *l, const float *x, float *y, int rows) {
    layernorm_forward(x, y, l->weight.data, l->bias.data, rows, l->dim, l->eps);
}

void nn_nchw_to_nlc(const float *x, float *y, int B, int C, int HW) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < HW; i++) {
            const float *xb = x + (int64_t)b * C * HW + i;
            float *yr = y + ((int64_t)b * HW + i) * C;
            for (int c = 0; c < C; c++) yr[c] = xb[(int64_t)c * HW];
        }
    }
}

void nn_nlc_to_nchw(const float *x, float *y, int B, int C, int HW) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++) {
            const float *xb = x + (int64_t)b * HW * C + c;
            float *yr = y + ((int64_t)b * C + c) * HW;
            for (int i = 0; i < HW; i++) yr[i] = xb[(int64_t)i * C];
        }
    }
}

float *nn_alloc(Arena *a, int64_t count) {
    if (count < 0) {
        sd_errorf("nn_alloc: negative size");
        return NULL;
    }
    return arena_floats(a, (size_t)(count ? count : 1));
}
