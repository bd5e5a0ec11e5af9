// Named parameters and growable activation buffers, shared by the fusion
// modules and the heads.
//
// A ParamSet is the C side of a PyTorch state_dict: every tensor a module owns
// is registered once, under its original state_dict name
// ("bottleneck_layers.3.0.conv2.norm.weight", "psp_modules.1.2.running_var"),
// in registration order. Loading, saving, the optimiser and the gradient
// golden checks all walk this list, so the names are written in one place:
// where the layer is built.
#ifndef SD_FUSION_PARAMS_H
#define SD_FUSION_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

typedef enum {
    PARAM_WEIGHT = 0,   // trainable float tensor (nn.Parameter): has a gradient
    PARAM_BUFFER = 1,   // float buffer saved with the weights (BatchNorm running_mean / running_var)
    PARAM_COUNTER = 2,  // int64 scalar buffer saved with the weights (BatchNorm num_batches_tracked)
} ParamKind;

#define PARAM_MAX_DIMS 4

typedef struct {
    char *name;
    ParamKind kind;
    int ndim;                    // 0 for a scalar (the MoE temperature)
    int shape[PARAM_MAX_DIMS];
    int64_t numel;
    float *data;                 // PARAM_WEIGHT, PARAM_BUFFER: numel floats (owned)
    float *grad;                 // PARAM_WEIGHT: numel floats once params_alloc_grads ran, else NULL
    int has_grad;                // a backward wrote grad since the last params_zero_grads ("grad is not None")
    int64_t counter;             // PARAM_COUNTER: the value
} Param;

typedef struct {
    Param **items;  // each Param is allocated on its own, so a Param* stays valid as the set grows
    int count, cap;
} ParamSet;

// Registers a tensor named by printf(fmt, ...), filled with `init`
// (counters start at 0). NULL (with a message) on out of memory or a duplicate name.
Param *params_add(ParamSet *ps, ParamKind kind, float init, int ndim, const int *shape, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;
Param *params_find(const ParamSet *ps, const char *name);
void params_free(ParamSet *ps);

// Fills every registered tensor from a safetensors file by name (float
// conversion for f16/bf16/f64, int64 for counters). Every registered name must
// be present with the same shape. strict: a tensor in the file that is not
// registered is an error too (torch load_state_dict(strict=True)).
int params_load(ParamSet *ps, const SafeTensors *st, int strict);
int params_load_file(ParamSet *ps, const char *path, int strict);
// Writes every registered tensor (F32, counters as I64) under its name, so
// PyTorch's load_state_dict reads the file back.
int params_save(const ParamSet *ps, const char *path, const char *const *meta_keys, const char *const *meta_values,
                int n_meta);

// Number of trainable floats (torch: sum(p.numel() for p in model.parameters())).
int64_t params_count_weights(const ParamSet *ps);
// Allocates a zeroed gradient for every PARAM_WEIGHT (no-op for those that have one).
int params_alloc_grads(ParamSet *ps);
// zero_grad(set_to_none=True): every gradient back to 0 and has_grad = 0.
void params_zero_grads(ParamSet *ps);
// The gradient buffer of a parameter that takes part in a backward, and has_grad = 1 on it
// ("grad is not None"). NULL when p is NULL or has no buffer (params_alloc_grads not run).
float *param_grad(Param *p);
// n zeroed floats (at least one) for a backward's temporaries; NULL with a message if out of memory.
float *zalloc_floats(size_t n);

// ---------------------------------------------------------------------------
// A float buffer that grows on demand: the activations a forward keeps for
// its backward, sized by the batch of the call.
typedef struct {
    float *data;
    size_t cap;  // floats
} FBuf;

// Ensures room for n floats and returns the data (contents kept when it grows).
// NULL with a message on out of memory.
float *fbuf(FBuf *b, size_t n);
void fbuf_free(FBuf *b);

// The same for int buffers (MoE expert choices, batch item lists).
typedef struct {
    int *data;
    size_t cap;
} IBuf;
int *ibuf(IBuf *b, size_t n);
void ibuf_free(IBuf *b);

#endif
