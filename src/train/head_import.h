// A run folder from a head trained by the original SatDiFuser code. run.py's save_model
// writes torch.save({"epoch", "global_step", "config" (an OmegaConf DictConfig of the merged
// experiment yaml), "decoder_net" (the head's state_dict), "optimizer_state_dict",
// "lr_scheduler"}) to best_ckpt_step_N.pth. The head's constructor arguments come from
// the config as run.py's utils/tasks.py create_decoder passes them (task, fuser,
// projection_dim, save_timesteps, num_classes, num_experts, top_k, channels, pool_scales,
// rescales; segmentation output at original_img_size), the fuser's own size from the
// state_dict's shapes, and what neither holds from the options: the feature layout (widths
// and channels of each stream) from a feature file extracted with the same model and size,
// and num_norm_groups (never passed by run.py: the class default 32).
// The folder gets head_config.json, best.safetensors and features_meta.json, what `eval` and
// `predict` read from a run folder made by `train`.
#ifndef SD_TRAIN_HEAD_IMPORT_H
#define SD_TRAIN_HEAD_IMPORT_H

typedef struct {
    const char *checkpoint;     // best_ckpt_step_N.pth
    const char *features;       // a feature file (or a folder of them) made by `extract` for this head
    const char *out_dir;        // the run folder to create
    const char *key;            // the state_dict's entry (default "decoder_net")
    int num_norm_groups;        // 0: 32, the original constructors' default
    int force;                  // replace an existing run folder's files
} HeadImportOptions;

// Writes the run folder; `summary` (may be NULL) gets one line describing the head.
int head_import(const HeadImportOptions *o, char *summary, int summary_size);

#endif
