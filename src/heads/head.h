// The whole trainable model on top of the frozen backbone: a fuser and a task
// head, as the original's GWFuserClassifier, LWFuserSegUPerNet, ... classes
// (the heads inherit from the fusers, so the state_dict names have no prefix).
//
// Built from a head config (the "config" of a golden case of module "head", or
// the JSON a training run saves):
//   {"task": "classification" | "multi_label_classification" | "segmentation",
//    "fuser": "gw" | "lw" | "moe" | "concat" | "single",
//    "feature_dims": {"<width>": [c, ...]}, "save_timesteps": [47, 45, 40],
//    "projection_dim": 384, "num_classes": N, "num_norm_groups": 32, "num_res_blocks": 1,
//    lw: "gating_tempature", "lw_advance_channels";
//    moe: "num_experts", "top_k", "warmup_steps" (300 classifiers / 500 segmenters), "gating_tempature",
//         "moe_global_step", "moe_counter" ("calls": released, "train_steps": corrected, see fusion/moe.c);
//    segmentation: "output_shape": [H, W], "channels" (512), "pool_scales" ([1,2,3,6]), "rescales" ([1,1,1,1]),
//         "align_corners" (false), "dropout" (0.1);
//    "fuser_projection_dim": see below}
//
// Released-code quirk (classifiers): LinearClassifierDecoderMixin consumes
// projection_dim and does not pass it on, so the original classifier's fuser
// is built with the fusers' default 384 and only the Linear uses
// projection_dim (the model only runs when projection_dim is 384). Here the
// fuser's size is "fuser_projection_dim": absent, it is 384 for classifiers
// (released) and projection_dim for segmenters; a classifier whose two sizes
// differ is refused with an explanation. Setting it to projection_dim is the
// corrected behaviour (what the golden cases were made with).
#ifndef SD_HEADS_HEAD_H
#define SD_HEADS_HEAD_H

#include "fusion/fuser.h"
#include "fusion/params.h"
#include "heads/linear.h"
#include "heads/uper.h"
#include "io/json.h"

typedef enum { TASK_CLASSIFICATION = 0, TASK_MULTILABEL = 1, TASK_SEGMENTATION = 2 } HeadTask;
const char *head_task_name(HeadTask t);

typedef struct {
    HeadTask task;
    FeatureLayout layout;
    FuserConfig fuser;        // fuser.projection_dim = the fuser's own size (see above)
    int projection_dim;       // the head's input size
    int num_classes;
    // segmentation (UPerNet)
    int output_h, output_w;
    int channels;
    int num_pool_scales, pool_scales[UPER_MAX_POOL];
    int num_rescales;
    double rescales[FUSION_MAX_SCALES];
    int align_corners;
    float dropout_p;
} HeadConfig;

// Parses a head config (see above); defaults are the original constructors'.
int head_config_from_json(HeadConfig *c, const JsonValue *j);
// The same, but an absent "fuser_projection_dim" follows projection_dim for
// classifiers too: how the golden cases' generator built the original models.
int head_config_from_json_golden(HeadConfig *c, const JsonValue *j);
// Writes the config back as JSON text (malloc'd) so a run folder can rebuild the model.
char *head_config_to_json(const HeadConfig *c);

typedef struct {
    HeadConfig cfg;
    ParamSet params;          // every tensor under its original state_dict name
    Fuser fuser;
    LinearHead linear;        // classification, multi-label
    UperHead uper;            // segmentation
    int training;             // 1: BatchNorm batch statistics + running update, Dropout2d; 0: evaluation
    int keep;                 // keep every call's activations (forced on in training)
    int out_ndim, out_shape[4];
} HeadModel;

// Builds the model (parameters at the original constructors' values: ones for
// norm scales and mixing weights, zeros elsewhere; load weights to use it).
int head_model_init(HeadModel *m, const HeadConfig *cfg);
void head_model_free(HeadModel *m);
int head_model_load(HeadModel *m, const char *path);                      // strict: names and shapes must match
int head_model_load_st(HeadModel *m, const SafeTensors *st);
int head_model_save(const HeadModel *m, const char *path);
// model.train() / model.eval(). keep: also keep activations in evaluation (captures).
void head_model_set_mode(HeadModel *m, int training, int keep);
// Checks that in matches the layout (batch, widths); channels are the caller's contract.
int head_model_forward(HeadModel *m, const FusionInput *in);
// The logits of the last forward: (B, classes) or (B, classes, H, W).
const float *head_model_logits(const HeadModel *m);

// The backward of the whole model. Given dlogits = d loss / d logits of the last TRAINING forward
// (the shape of head_model_logits), accumulates every parameter's gradient into its Param->grad
// (allocating the gradient buffers on first use) and sets has_grad = 1 on each parameter that
// received one (an MoE expert that no batch item chose in top-k receives none). Does not change
// parameters, BatchNorm statistics or the MoE counters. -1 with a message if the last forward was
// not a training forward. Conventions: fuser_backward (fusion/fuser.h). A training step (run.py's
// inner loop):
//   params_zero_grads(&m.params);                     // optimizer.zero_grad(set_to_none=True)
//   head_model_set_mode(&m, 1, 1);                    // model.train()
//   head_model_forward(&m, &in);                      // in's feature tensors must stay alive until
//                                                     // the backward: the MoE gate reads them there
//   memset(dlogits, 0, ...);
//   cross_entropy_loss(&loss, dlogits, head_model_logits(&m), labels, ...);   // or bce_with_logits_loss
//   head_model_backward(&m, dlogits);
//   adam_step(&opt, &m.params, &adam_cfg);            // skips parameters with has_grad == 0
int head_model_backward(HeadModel *m, const float *dlogits);
// The same, and dfeat (may be NULL) += d loss / d input features.
int head_model_backward_ex(HeadModel *m, const float *dlogits, FusionGrad *dfeat);

#endif
