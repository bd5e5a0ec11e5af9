// The LDM -> diffusers converter's internals, shared by its files (not part of the library's API):
// the rename tables' row and block ("unit") types, the name-parsing helpers (ldm_names.c) and the
// per-part name maps (ldm_unet.c, ldm_vae.c, ldm_text.c). ldm_plan.c builds the plan from them.
#ifndef SD_CONVERT_LDM_RENAME_H
#define SD_CONVERT_LDM_RENAME_H

#include "convert/ldm_plan.h"

enum { REQ, OPT };  // every instance of the block has it / only some
#define AS_IS LDM_AS_IS
#define TO_LINEAR LDM_CONV1X1_TO_LINEAR
#define SPLIT_QKV LDM_SPLIT_QKV
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

// One row of a rename table. Each table is one kind of block ("unit"): the names of its tensors
// in the checkpoint, their names in diffusers, and whether every instance of the block has them.
typedef struct {
    const char *ldm;        // inside the block, in the checkpoint
    const char *diffusers;  // inside the block, in diffusers ("{q,k,v}" marks the three parts of a split)
    int need;               // REQ or OPT (a 1x1 shortcut conv exists only where the width changes)
    LdmReshape reshape;
} Rename;

typedef struct {
    const char *what;  // the block's name in messages
    const Rename *rows;
    int count;
} LdmUnit;

// The units (LdmTarget.unit), each defined beside its part's name map.
enum {
    U_UNET_TOP,
    U_UNET_RESBLOCK,
    U_UNET_DOWNSAMPLE,
    U_CONV,
    U_UNET_ATTENTION,
    U_UNET_TRANSFORMER_BLOCK,
    U_VAE_ENCODER_TOP,
    U_VAE_DECODER_TOP,
    U_VAE_RESBLOCK,
    U_VAE_ATTENTION,
    U_OPENCLIP_TOP,
    U_OPENCLIP_LAYER,
    U_CLIP_TOP,
    U_CLIP_LAYER,
    U_COUNT
};
extern const LdmUnit *const ldm_units[U_COUNT];  // ldm_names.c
extern const LdmUnit ldm_unit_unet_top, ldm_unit_unet_resblock, ldm_unit_unet_downsample, ldm_unit_conv,
    ldm_unit_unet_attention, ldm_unit_unet_transformer_block;                                   // ldm_unet.c (conv: ldm_names.c)
extern const LdmUnit ldm_unit_vae_encoder_top, ldm_unit_vae_decoder_top, ldm_unit_vae_resblock,
    ldm_unit_vae_attention;                                                                     // ldm_vae.c
extern const LdmUnit ldm_unit_openclip_top, ldm_unit_openclip_layer, ldm_unit_clip_top, ldm_unit_clip_layer;  // ldm_text.c

// ---- Name parsing (ldm_names.c)
// s without `prefix`, or NULL.
const char *ldm_after(const char *s, const char *prefix);
// s = prefix + "<digits>." + rest: sets *idx and returns rest, else NULL (s may be NULL).
const char *ldm_take_index(const char *s, const char *prefix, int *idx);
// The row of `unit` whose checkpoint name is `rest`, or -1.
int ldm_unit_row(int unit, const char *rest);
// -1 with "tensor 'name': unknown name [for a what]".
int ldm_unknown(const char *name, const char *what);
// `rest` is the part of `name` inside a block of kind `unit`; dprefix is the block's diffusers
// prefix. Fills *t and returns 1, or -1 (unknown name).
int ldm_rename_in_unit(LdmTarget *t, int unit, const char *name, const char *rest, const char *dprefix);

// ---- The parts' name maps: r is `name` after the part's prefix; ldm_map_name's contract.
int ldm_map_unet(const LdmLayout *L, const char *name, const char *r, LdmTarget *t);                       // ldm_unet.c
int ldm_map_vae(const LdmLayout *L, const char *name, const char *r, LdmTarget *t, const char **why);       // ldm_vae.c
int ldm_map_openclip(const LdmLayout *L, const char *name, const char *r, LdmTarget *t, const char **why);  // ldm_text.c
int ldm_map_clip(const LdmLayout *L, const char *name, const char *r, LdmTarget *t, const char **why);      // ldm_text.c

#endif
