// The DDIM scheduler (diffusers DDIMScheduler: betas, float32 cumulative
// alphas, timestep spacing) and the DDIM inversion walk of SatDiFuser's
// LDMExtractor.generalized_steps (SPEC.md section 5).
//
// The walk is planned first (a list of UNet calls with their timesteps and
// alphas), then run by the caller, who owns the UNet: ddim_step() moves a latent
// one step given the UNet output. ddim_invert() is a small driver for callers
// that pass the UNet as a callback.
#ifndef SD_DDIM_H
#define SD_DDIM_H

#include <stdint.h>

#include "io/json.h"

typedef enum { PRED_EPSILON = 0, PRED_V = 1, PRED_SAMPLE = 2 } PredictionType;
typedef enum { SPACING_LEADING = 0, SPACING_TRAILING = 1, SPACING_LINSPACE = 2 } TimestepSpacing;
typedef enum { BETAS_LINEAR = 0, BETAS_SCALED_LINEAR = 1, BETAS_SQUAREDCOS_CAP_V2 = 2 } BetaSchedule;

// scheduler/scheduler_config.json, the keys DDIMScheduler reads.
typedef struct {
    int num_train_timesteps;          // 1000
    double beta_start, beta_end;      // 0.00085, 0.012
    BetaSchedule beta_schedule;       // scaled_linear
    int set_alpha_to_one;             // 1 (DDIMInverseScheduler: the alpha below t = 0)
    int steps_offset;                 // 1
    TimestepSpacing timestep_spacing; // leading
    PredictionType prediction_type;   // what the checkpoint predicts (SD 2.1 768: v_prediction)
    int clip_sample;                  // 0 for SD; used only by the "diffusers" convention
    double clip_sample_range;         // 1.0
    int rescale_betas_zero_snr;       // 0
    float *trained_betas;             // optional, num_train_timesteps values (owned)
} DdimConfig;

// The SD 2.1 / DiffusionSat scheduler config (scaled_linear 0.00085..0.012,
// 1000 steps, leading spacing, steps_offset 1, set_alpha_to_one false is what
// the checkpoints ship, but the walk below uses alpha 1 at t = -1 regardless).
void ddim_config_default(DdimConfig *c);
// Reads a scheduler config.json object; absent keys keep DDIMScheduler's
// own defaults (linear 0.0001..0.02, offset 0, set_alpha_to_one true), as
// diffusers does. `source` names the file in messages.
int ddim_config_from_json(const JsonValue *obj, const char *source, DdimConfig *c);
void ddim_config_free(DdimConfig *c);

typedef struct {
    DdimConfig cfg;
    float *betas;             // (num_train_timesteps) float32, exactly as torch computes them
    float *alphas_cumprod;    // (num_train_timesteps) float32: torch.cumprod (double accumulator on CPU)
    float final_alpha_cumprod;    // 1 if set_alpha_to_one else alphas_cumprod[0]
    int num_inference_steps;  // 0 until ddim_set_timesteps
    int n_timesteps;          // length of timesteps: num_inference_steps, except that numpy's arange
                              // gives "trailing" spacing one more for some counts (61, 103, ...), as in diffusers
    int *timesteps;           // (n_timesteps), descending, as DDIMScheduler.timesteps
} DdimScheduler;

// Builds betas and alphas_cumprod. The config is copied (trained_betas too).
int ddim_init(DdimScheduler *s, const DdimConfig *c);
// DDIMScheduler.set_timesteps(n).
int ddim_set_timesteps(DdimScheduler *s, int num_inference_steps);
void ddim_free(DdimScheduler *s);
// alphas_cumprod[t] for 0 <= t < num_train_timesteps; -1 when out of range.
double ddim_alpha(const DdimScheduler *s, int t);

// torch.linspace(start, end, n, dtype=float32) as torch 1.13's CPU kernel
// computes it (AVX2 build: 8-wide chunks, fused multiply-add bases), so the
// betas match diffusers bit for bit.
void ddim_torch_linspace_f32(double start, double end, int n, float *out);

// ---------------------------------------------------------------------------
// The inversion walk.

typedef enum {
    // LDMExtractor.generalized_steps: pairs (t, t_next) = (-1, 1), (1, 21), ...;
    // the UNet runs at t on x_t; alpha(-1) = 1; step i has the index
    // n_steps - 1 - i; the walk stops after n_steps - min(save) calls.
    DDIM_CONVENTION_SATDIFUSER = 0,
    // diffusers' DDIMInverseScheduler loop (newer releases): for each t of the
    // ascending timesteps the UNet runs at t on x at level t - step_ratio
    // (alpha 1 or alphas_cumprod[0] below 0, per set_alpha_to_one), and the
    // step moves x to level t. Captures need one more UNet pass at t.
    DDIM_CONVENTION_DIFFUSERS = 1,
} DdimConvention;

typedef enum {
    // The original: the UNet output is used as epsilon whatever the checkpoint
    // predicts (SPEC.md section 5). The default.
    DDIM_OUTPUT_AS_EPSILON = 0,
    // Convert by the scheduler config's prediction_type (v -> epsilon, x0).
    DDIM_OUTPUT_BY_CONFIG = 1,
} DdimOutputHandling;

#define DDIM_MAX_SAVE 16

typedef struct {
    int num_inference_steps;          // 50
    int n_save;
    int save_index[DDIM_MAX_SAVE];    // satdifuser convention: step indices, default 47, 45, 40
    int save_timestep[DDIM_MAX_SAVE]; // diffusers convention: timesteps T to capture at
    int max_calls;                    // stop after this many walking calls; <= 0: the default stop
    DdimConvention convention;
    DdimOutputHandling output_handling;
} DdimWalkOptions;

// 50 steps, save 47, 45, 40, satdifuser convention, output as epsilon.
void ddim_walk_options_default(DdimWalkOptions *o);

typedef struct {
    float t_unet;        // timestep given to the UNet (float: the first call is at -1)
    int index;           // the original's cur_t (n_steps - 1 - i); -1 for capture-only passes
    int advance;         // 1: the output moves x; 0: a capture-only pass (x unchanged)
    int t_from, t_to;    // noise levels before and after this step (t_from -1 = clean latent)
    float alpha, alpha_next;  // cumulative alphas used by the step (float32, as torch)
    int save_slot;       // position in the save list if features are captured at this call, else -1
} DdimCall;

typedef struct {
    int n_calls;
    DdimCall *calls;
    int n_save;
    int save_index[DDIM_MAX_SAVE];    // as given (satdifuser convention)
    int save_t[DDIM_MAX_SAVE];        // the UNet timestep of each save
    DdimOutputHandling output_handling;
    PredictionType prediction_type;
    int clip_sample;
    float clip_sample_range;
} DdimWalk;

// Plans the walk; the scheduler must have ddim_set_timesteps(o->num_inference_steps) done
// (it is done here when it is not). Fails when a save index or timestep is never reached.
int ddim_walk_plan(DdimScheduler *s, const DdimWalkOptions *o, DdimWalk *w);
void ddim_walk_free(DdimWalk *w);
// For the satdifuser convention: the step index whose UNet call is at timestep T
// (T = 21 -> 47 at 50 steps); -1 (with a message) if no call is at T.
int ddim_index_for_timestep(const DdimScheduler *s, int num_inference_steps, int T);

// One DDIM step with eta 0, element-wise, float32 in the order torch evaluates
// get_xt_next:  x0 = (x - sqrt(1-a) e) / sqrt(a);  x_next = sqrt(a_next) x0 + sqrt(1-a_next) e.
// model_out is converted to epsilon first when the walk handles v/sample
// prediction by config. x_next may equal x. x0 (may be NULL) receives x0.
void ddim_step(const DdimWalk *w, const DdimCall *c, const float *x, const float *model_out, float *x_next,
               float *x0, int64_t n);

// The UNet as a callback: out = unet(x, t_unet); `call` tells which call it is
// (call->save_slot >= 0: capture features now). Returns 0 or -1.
typedef int (*DdimModelFn)(void *ctx, const DdimCall *call, const float *x, float *out);

// Runs the walk on x (n floats, modified in place: on return it holds the last
// latent). after_step (may be NULL) sees x after each advancing call.
typedef int (*DdimStepFn)(void *ctx, const DdimCall *call, const float *x_next);
int ddim_invert(const DdimWalk *w, float *x, int64_t n, DdimModelFn model, DdimStepFn after_step, void *ctx);

#endif
