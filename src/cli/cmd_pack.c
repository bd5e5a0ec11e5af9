// satdifuser pack: a diffusers model folder as one packed model file (src/models/pack.h) that
// extract, predict and the library load by mapping it, without converting or packing anything.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/error.h"
#include "core/runtime.h"
#include "kernels/kernels.h"
#include "models/nn.h"
#include "models/pack.h"

static void pack_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser pack --model DIR --out MODEL.sdpack [options]\n\n"
            "Writes the whole pipeline of a model folder (UNet, VAE encoder, text encoder, tokenizer,\n"
            "scheduler, configs, the folder's fingerprint) as one file whose linear and conv weights are\n"
            "already in the GEMM micro-kernel's layout. `extract --model MODEL.sdpack` (and predict) map\n"
            "it instead of reading and repacking every weight: the load takes about as long as reading\n"
            "the file, and processes on one machine share its pages. Features are the same bits as from\n"
            "the folder, and record the folder's model fingerprint.\n\n"
            "  --model DIR          diffusers folder (safetensors or PyTorch .bin weights)\n"
            "  --unet DIR           the UNet's folder when it is not DIR/unet (DiffusionSat's release)\n"
            "  --out FILE           the packed file to write (replaced only with --force)\n"
            "  --isa auto|avx512|avx2|neon|generic   the kernel set whose layout to write (default: the\n"
            "                       one this CPU uses; a file for another loads too, repacked at load)\n"
            "  --precision f32|f16  the panels' precision (default f32). f16: the weights rounded to IEEE\n"
            "                       half, half the file and the memory; such a file runs only with\n"
            "                       `--precision f16` (the same features as the folder with it). f32 panels\n"
            "                       run with every precision (f16 and bf16 round them at load)\n"
            "  --force              replace an existing --out\n"
            "Exit status: 0 written, 1 failed (nothing written), 2 usage error.\n");
}

int cmd_pack(int argc, char **argv) {
    const char *model = NULL, *unet = NULL, *out = NULL, *isa = "auto", *precision = "f32";
    int force = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { pack_usage(stdout); return 0; }
        if (!strcmp(a, "--force")) { force = 1; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "satdifuser pack: %s needs a value\n", a); return 2; }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--unet")) unet = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--isa")) isa = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else { fprintf(stderr, "satdifuser pack: unknown option '%s'\n\n", a); pack_usage(stderr); return 2; }
    }
    if (!model || !out) { fprintf(stderr, "satdifuser pack: --model and --out are required\n\n"); pack_usage(stderr); return 2; }
    int p = nn_precision_parse(precision, "--precision");
    if (p == NN_BF16) {
        fprintf(stderr, "satdifuser pack: --precision bf16: f32 or f16 panels are written (bf16 compute rounds f32 "
                        "panels at load)\n");
        return 2;
    }
    if (p < 0 || nn_set_precision(p)) {
        fprintf(stderr, "satdifuser pack: %s\n", sd_last_error());
        return 2;
    }
    int want = !strcmp(isa, "avx512") ? ISA_AVX512 : !strcmp(isa, "avx2") ? ISA_AVX2 : !strcmp(isa, "neon") ? ISA_NEON
               : (!strcmp(isa, "generic") || !strcmp(isa, "scalar")) ? ISA_SCALAR : !strcmp(isa, "auto") ? -1 : -2;
    if (want == -2) { fprintf(stderr, "satdifuser pack: --isa '%s': expected auto, avx512, avx2, neon or generic\n", isa); return 2; }
    if (want >= 0 && gemm_force_isa(want)) {
        fprintf(stderr, "satdifuser pack: --isa %s: this CPU cannot run that kernel set (it runs %s)\n", isa,
                gemm_kernel_info()->name);
        return 2;
    }
    struct stat sb;
    if (!force && stat(out, &sb) == 0) {
        fprintf(stderr, "satdifuser pack: %s exists: choose another --out or pass --force to replace it\n", out);
        return 2;
    }
    char summary[512];
    double t0 = sd_now();
    if (model_pack_write(model, unet, out, summary, sizeof(summary))) {
        fprintf(stderr, "satdifuser pack: %s\n", sd_last_error());
        return 1;
    }
    printf("wrote %s: %s (%.1f s)\n", out, summary, sd_now() - t0);
    return 0;
}
