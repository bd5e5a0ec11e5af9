// Fusion: from the diffusion feature pyramid of every saved timestep to one
// fused map per scale (archs/aggregation_networks.py).
//
// Input: for each saved timestep t and each scale s (from the largest width
// down), the scale's streams concatenated on channels: (B, C_s, H_s, W_s).
// Output: fused[s] (B, P, H_s, W_s), P = projection_dim.
//
// Fusers:
//   gw      GlobalWeightedFuser: one Phi per stream (shared over timesteps), one
//           softmax over all streams x timesteps weights, weighted sum.
//   lw      LocalWeightedFuser: the same Phis; per scale a 1x1 gate conv on the
//           mean projected map, a per-pixel softmax over the K = T x L_s maps.
//   moe     MoEWeightedFuser: per scale, experts (Phis on the whole scale) mixed
//           by a pooled 3x3 gate conv; dense softmax during warmup, top-k after;
//           mean over timesteps.
//   concat  baseline (paper Table 3, not in the released code): per scale, the
//           timesteps' features concatenated on channels, one 1x1 conv to P.
//   single  baseline (paper Table 3, not in the released code): per scale, one
//           stream at one timestep through its Phi.
//
// The layout (scales, streams, channels, timesteps) comes from the config /
// the feature files, never from constants.
#ifndef SD_FUSION_FUSER_H
#define SD_FUSION_FUSER_H

#include <stdint.h>

#include "core/tensor.h"
#include "fusion/layers.h"
#include "fusion/params.h"
#include "fusion/phi.h"
#include "io/json.h"

#define FUSION_MAX_SCALES 8
#define FUSION_MAX_STREAMS 64   // per scale
#define FUSION_MAX_TIMESTEPS 16

typedef struct {
    int num_scales;
    int width[FUSION_MAX_SCALES];                           // descending: scale 0 is the largest
    int num_streams[FUSION_MAX_SCALES];
    int channels[FUSION_MAX_SCALES][FUSION_MAX_STREAMS];    // each stream's channels, in concatenation order
    int scale_channels[FUSION_MAX_SCALES];                  // C_s = sum of the scale's stream channels
    int num_timesteps;
    int timesteps[FUSION_MAX_TIMESTEPS];                    // save_timesteps as given (the input order)
    int ts_input[FUSION_MAX_TIMESTEPS];                     // ts_idx k (timesteps sorted descending) -> input position
} FeatureLayout;

// feature_dims: {"<width>": [c, ...], ...}; save_timesteps: [47, 45, 40].
int feature_layout_from_json(FeatureLayout *fl, const JsonValue *feature_dims, const JsonValue *save_timesteps);
// The same from the JSON texts a feature file's metadata holds ("feature_dims", "save_timesteps").
int feature_layout_from_strings(FeatureLayout *fl, const char *feature_dims_json, const char *save_timesteps_json);
int feature_layout_total_streams(const FeatureLayout *fl);
// Index of stream l of scale s among all streams (get_bottleneck_index).
int feature_layout_stream_index(const FeatureLayout *fl, int s, int l);

typedef enum { FUSER_GW = 0, FUSER_LW, FUSER_MOE, FUSER_CONCAT, FUSER_SINGLE } FuserKind;
const char *fuser_kind_name(FuserKind k);
int fuser_kind_from_name(const char *name, FuserKind *out);

typedef struct {
    FuserKind kind;
    int projection_dim;        // P (the fuser's own; see head.h for the classifier quirk)
    int num_norm_groups;       // GroupNorm groups inside Phi (32 in the original)
    int num_res_blocks;        // BottleneckBlocks per Phi (1)
    float gating_temperature;  // lw: softmax(logits / T); moe: the learnable temperature's initial value
    int lw_advance_channels;   // lw: 0 = released code (start_channel never advances), 1 = corrected
    int num_experts, top_k, warmup_steps;  // moe
    int64_t moe_global_step;   // moe: every scale's call counter at construction (non-persistent)
    int moe_count_train_steps; // moe: 0 = released ("calls": +1 per call, once per timestep, in evaluation
                               // too; not saved); 1 = corrected ("train_steps": +1 per training forward,
                               // top-k from warmup_steps training steps on; saved with the weights)
    int single_stream;         // single: stream index inside each scale (clamped to the scale's count)
    int single_timestep;       // single: the timestep used (-1: the largest)
} FuserConfig;

// Defaults of the original constructors (warmup 500: MoEWeightedFuser; the heads override it).
void fuser_config_defaults(FuserConfig *c);
// Reads "fuser", "projection_dim", "num_norm_groups", "num_res_blocks", "gating_tempature",
// "num_experts", "top_k", "warmup_steps", "moe_global_step", "lw_advance_channels",
// "single_stream", "single_timestep" from a head config (absent keys keep their value).
int fuser_config_from_json(FuserConfig *c, const JsonValue *j);

typedef struct {
    int B;
    int H[FUSION_MAX_SCALES], W[FUSION_MAX_SCALES];
    int C[FUSION_MAX_SCALES];  // channels of each scale's tensors, checked against the layout (0: not checked)
    // [position in save_timesteps][scale]: (B, C_s, H_s, W_s), contiguous
    const float *feat[FUSION_MAX_TIMESTEPS][FUSION_MAX_SCALES];
} FusionInput;

// d loss / d features, laid out as FusionInput.feat: [position in save_timesteps][scale],
// each (B, C_s, H_s, W_s). A NULL entry (or a NULL FusionGrad) is not computed.
typedef struct {
    float *feat[FUSION_MAX_TIMESTEPS][FUSION_MAX_SCALES];
} FusionGrad;
// The entry of timestep k (in the fusers' descending order) and scale s; NULL when g is NULL.
float *fusion_grad_at(FusionGrad *g, const FeatureLayout *fl, int k, int s);

// ---- global weighted (global.c) ------------------------------------------
typedef struct {
    int num_streams;         // L over all scales
    Phi *phis;               // L: "bottleneck_layers.<i>"
    Param *mixing_weights;   // (L * T), index ts_idx * L + stream
    FBuf weights;            // softmax(mixing_weights) of the last forward
    int num_calls;           // L * T, call index = weight index
    FBuf *inputs;            // per call: the stream's channels (B, c_l, H, W)
    FBuf *outputs;           // per call: its Phi output (B, P, H, W)
    PhiCache *caches;        // per call
} GlobalFuser;

// ---- localized weighted (local.c) ----------------------------------------
typedef struct {
    int num_streams;
    Phi *phis;                                // "bottleneck_layers.<i>", as gw
    ConvLayer gate_conv[FUSION_MAX_SCALES];   // "gate_modules.<s>.gate_conv": 1x1 P -> K_s, bias
    float temperature;                        // gating_tempature (a constant, not learnt)
    int advance_channels;
    FBuf mean[FUSION_MAX_SCALES];             // (B, P, H, W) mean of the K projected maps
    FBuf gate[FUSION_MAX_SCALES];             // (B, K, H, W) softmax(gate_conv(mean) / T) over K
    int num_calls;                            // L * T; call (s, k, l) = T * first_stream(s) + k * L_s + l
    FBuf *inputs, *outputs;
    PhiCache *caches;
} LocalFuser;

// ---- mixture of experts (moe.c) -----------------------------------------
typedef struct {
    int in_channels, num_experts, top_k, warmup_steps;
    Phi *experts;            // "scale_moes.<s>.experts.<e>"
    ConvLayer gate_conv;     // "scale_moes.<s>.gate_network.0": 3x3 pad 1, C_s -> E, bias
    Param *temperature;      // "scale_moes.<s>.temperature" (scalar)
    int64_t global_step;     // the call counter (a non-persistent buffer: not saved)
    int count_train_steps;   // the corrected counter (see FuserConfig)
} MoEScale;

typedef struct {
    int n;                   // batch items routed to this expert in this call
    IBuf items;              // which, ascending
    FBuf x;                  // their input, gathered (top-k calls; dense calls read the features directly)
    FBuf out;                // the expert's output (n, P, H, W)
    PhiCache cache;
} MoEExpertRun;

typedef struct {
    int64_t step;            // the counter value this call saw (after its increment)
    int topk_active;         // 0: dense softmax mixture (warmup), 1: top-k
    int B;
    FBuf logits;             // (B, E) pooled gate logits before / temperature
    FBuf probs;              // (B, E) softmax(logits / temperature)
    IBuf topk_idx;           // (B, k) experts in descending gate order
    FBuf topk_w;             // (B, k) softmax of the k kept (tempered) logits
    MoEExpertRun *runs;      // E (points to the shared runs when not kept)
} MoECall;

typedef struct {
    int num_scales, num_timesteps, num_experts;
    MoEScale scales[FUSION_MAX_SCALES];
    int num_calls;           // S * T, call (s, k) = s * T + k
    MoECall *calls;
    MoEExpertRun *kept_runs;   // num_calls * E
    MoEExpertRun *shared_runs; // E
    FBuf gate_map;           // scratch: the gate conv output (B, E, H, W)
    FBuf call_out;           // scratch: one call's mixture (B, P, H, W)
} MoEFuser;

// ---- baselines (concat.c, single.c) ---------------------------------------
typedef struct {
    ConvLayer proj[FUSION_MAX_SCALES];   // "proj_convs.<s>": 1x1, T * C_s -> P, bias
    FBuf input[FUSION_MAX_SCALES];       // (B, T * C_s, H, W): timesteps in descending order
} ConcatFuser;

typedef struct {
    int stream[FUSION_MAX_SCALES];       // the stream used at each scale
    int input_pos;                       // position of the timestep in the input
    Phi phis[FUSION_MAX_SCALES];         // "bottleneck_layers.<s>"
    FBuf inputs[FUSION_MAX_SCALES];
    PhiCache caches[FUSION_MAX_SCALES];
} SingleFuser;

// ---- the fuser -------------------------------------------------------------
typedef struct {
    FuserConfig cfg;
    FeatureLayout layout;
    GlobalFuser gw;
    LocalFuser lw;
    MoEFuser moe;
    ConcatFuser concat;
    SingleFuser single;
    int B, H[FUSION_MAX_SCALES], W[FUSION_MAX_SCALES];
    FBuf fused[FUSION_MAX_SCALES];       // the outputs (B, P, H_s, W_s)
} Fuser;

// Builds the fuser and registers its parameters (original names, no prefix:
// the original heads inherit from the fusers).
int fuser_init(Fuser *f, const FuserConfig *cfg, const FeatureLayout *fl, ParamSet *ps);
// fused[s] = fusion of `in`. training: record what the backward needs (GroupNorm
// statistics); keep: keep every call's activations (needed by the backward and
// by the golden captures) instead of reusing one scratch set. The MoE counters
// advance in both modes.
int fuser_forward(Fuser *f, const FusionInput *in, int training, int keep);
// The backward of the last forward, which must have been a training forward that kept every call's
// activations (keep = 1), on the same parameter values: dfused[s] = d loss / d f->fused[s]
// (B, P, H_s, W_s); dfeat (may be NULL) += d loss / d input features.
// llm.c style: parameter gradients ACCUMULATE (+=) into Param->grad and set has_grad = 1 on every
// parameter that took part (params_alloc_grads first; params_zero_grads before each step). A
// parameter that did not take part keeps has_grad = 0: an MoE expert no batch item chose in a top-k
// call (Adam then skips it, as torch does for a None gradient). The MoE counters are not touched
// (the forward advanced them). Each reduction gives each output element to one thread (or runs
// serially) in a fixed order, so the gradients do not depend on the thread count.
int fuser_backward(Fuser *f, const float *const *dfused, FusionGrad *dfeat);
void fuser_free(Fuser *f);

// What the global and localized fusers share: one Phi per stream of every scale, registered as
// "bottleneck_layers.<stream index>" (*phis, feature_layout_total_streams of them, allocated here),
// and n per-call buffers (the stream's input, its Phi output, the Phi's cache).
int fuser_stream_phis_init(Phi **phis, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps);
int fuser_calls_alloc(int n, FBuf **inputs, FBuf **outputs, PhiCache **caches);
void fuser_calls_free(int n, FBuf *inputs, FBuf *outputs, PhiCache *caches);

// The fusers one by one (fuser_init / fuser_forward / fuser_backward dispatch to them); each
// backward has fuser_backward's contract.
int gw_init(GlobalFuser *g, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps);
int gw_forward(GlobalFuser *g, const FeatureLayout *fl, const FusionInput *in, FBuf *fused, int training, int keep);
int gw_backward(GlobalFuser *g, const FeatureLayout *fl, int B, const int *H, const int *W,
                const float *const *dfused, FusionGrad *dfeat);
void gw_free(GlobalFuser *g);

int lw_init(LocalFuser *g, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps);
int lw_forward(LocalFuser *g, const FeatureLayout *fl, const FusionInput *in, FBuf *fused, int training, int keep);
int lw_backward(LocalFuser *g, const FeatureLayout *fl, int B, const int *H, const int *W,
                const float *const *dfused, FusionGrad *dfeat);
void lw_free(LocalFuser *g);
// Channel offset where stream l of scale s is read (0 for every stream under the released quirk).
int lw_stream_offset(const LocalFuser *g, const FeatureLayout *fl, int s, int l);

int moe_init(MoEFuser *m, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps);
int moe_forward(MoEFuser *m, const FeatureLayout *fl, const FusionInput *in, FBuf *fused, int training, int keep);
int moe_backward(MoEFuser *m, const FeatureLayout *fl, int B, const int *H, const int *W,
                 const float *const *dfused, FusionGrad *dfeat);
void moe_free(MoEFuser *m);
// Sets every scale's call counter (the original's global_step buffers).
void moe_set_global_step(MoEFuser *m, int64_t step);

int concat_init(ConcatFuser *c, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps);
int concat_forward(ConcatFuser *c, const FeatureLayout *fl, const FusionInput *in, FBuf *fused);
int concat_backward(ConcatFuser *c, const FeatureLayout *fl, int B, const int *H, const int *W,
                    const float *const *dfused, FusionGrad *dfeat);
void concat_free(ConcatFuser *c);

int single_init(SingleFuser *g, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps);
int single_forward(SingleFuser *g, const FeatureLayout *fl, const FusionInput *in, FBuf *fused, int training);
// fused: the forward's outputs (Phi's output is the fused map itself).
int single_backward(SingleFuser *g, const FeatureLayout *fl, int B, const int *H, const int *W,
                    const float *const *dfused, const FBuf *fused, FusionGrad *dfeat);
void single_free(SingleFuser *g);

#endif
