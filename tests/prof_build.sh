#!/bin/sh
# Builds BUILD/prof/satdifuser_prof: the CLI with tests/prof_wrap.c's timers around the extraction's
# stages and the models' operators (ld --wrap; the library's objects are the same as satdifuser's, so
# are the results). Run it like satdifuser; the tables go to stderr at exit, or to $PROF_OUT.
#   sh tests/prof_build.sh && PROF_OUT=/tmp/prof.txt build/prof/satdifuser_prof extract --model M ...
set -e
B=${BUILD:-build}
make -j2 satdifuser >/dev/null
mkdir -p "$B/prof"
CFLAGS="-std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -g -Wall -Wextra -fopenmp -Isrc -I. -D_FILE_OFFSET_BITS=64"
cc $CFLAGS -c tests/prof_wrap.c -o "$B/prof/prof_wrap.o"
W=""
for s in diffusion_model_load gb_image_load preprocess_image_report clip_text_forward_run vae_encode_run unet_forward ddim_step pyramid_fill \
         feature_cache_write resnet_block_forward transformer2d_forward downsample_forward upsample_forward \
         nn_conv2d nn_linear nn_linear_channels_first nn_groupnorm nn_groupnorm_silu nn_layernorm attention_forward \
         add_inplace silu_inplace gelu_inplace captures_offer train_run evaluate head_model_set_mode \
         dataset_load_batch head_model_forward head_model_backward adam_step; do
    W="$W -Wl,--wrap=$s"
done
cc $CFLAGS -o "$B/prof/satdifuser_prof" "$B"/src/cli/*.o "$B/prof/prof_wrap.o" "$B/libsatdifuser.a" $W -fopenmp -lm
echo "$B/prof/satdifuser_prof"
