# satdifuser: C99 + OpenMP, nothing else. `make`, `make test`, `make asan`, `make bench`.
CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
CFLAGS  ?=
CFLAGS  += -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) -g -Wall -Wextra -fopenmp -Isrc -I. $(SAN)
LDLIBS  += $(SAN) -fopenmp -lm
# 64-bit file offsets and inode numbers on 32-bit hosts (armhf): without it readdir fails
# with EOVERFLOW on large file systems. A no-op on 64-bit hosts.
CFLAGS  += -D_FILE_OFFSET_BITS=64

# The library: every module but the command-line front end; src/satdifuser.h is its public face
# (src/api, docs/library.md).
LIB_DIRS := core io kernels models fusion heads train golden figures api convert
LIB_SRC  := $(foreach d,$(LIB_DIRS),$(wildcard src/$(d)/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC  := $(wildcard src/cli/*.c)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard tests/bench_*.c)
BENCH_BIN := $(BENCH_SRC:tests/%.c=$(BUILD)/tests/%)
LIB      := $(BUILD)/libsatdifuser.a
# Programs that embed the library through src/satdifuser.h alone (copied to $(BUILD)/include: the only
# header on their include path), linked with the .a.
EXAMPLE_SRC := $(wildcard examples/*.c)
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)

.PHONY: all test asan bench clean demo fuzz
all: satdifuser$(EXE_SUFFIX) $(LIB) $(EXAMPLE_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

satdifuser$(EXE_SUFFIX): $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/include/satdifuser.h: src/satdifuser.h
	@mkdir -p $(dir $@)
	cp $< $@

$(BUILD)/examples/%: examples/%.c $(BUILD)/include/satdifuser.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(OPT) -g -Wall -Wextra $(SAN) -I$(BUILD)/include -o $@ $< $(LIB) $(LDLIBS)

# Every test program, then the golden runner over golden/ and ../shared/golden (tests/cli_embed.sh
# runs the examples from SATDIFUSER_EXAMPLES).
test: satdifuser$(EXE_SUFFIX) $(TEST_BIN) $(EXAMPLE_BIN)
	@SATDIFUSER_EXAMPLES=$(BUILD)/examples sh tests/run_tests.sh ./satdifuser$(EXE_SUFFIX) $(TEST_BIN)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	$(MAKE) BUILD=build-asan EXE_SUFFIX=-asan OPT="-O1" \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

# OMP_WAIT_POLICY=PASSIVE unless set: spinning idle threads made the whole-model
# forwards 3.5x slower on a shared machine; GOMP_SPINCOUNT=2000: a ~20 us spin
# before sleeping (the CLI sets the same in main.c).
bench: satdifuser$(EXE_SUFFIX) $(BENCH_BIN)
	@for b in $(BENCH_BIN); do OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} GOMP_SPINCOUNT=$${GOMP_SPINCOUNT:-2000} $$b || exit 1; done

# Cross builds run under qemu-user: arm64 (NEON and scalar paths), armhf (32-bit), s390x
# (big-endian). Each builds into build-<arch>/ and runs the unit tests, every golden case on
# each ISA path of the target and the CLI scripts (tests/run_cross.sh, docs/edge.md). Slow:
# not part of `make test`. Needs (Debian 12):
#   apt-get install gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf gcc-s390x-linux-gnu \
#     libgomp1-arm64-cross libgomp1-armhf-cross libgomp1-s390x-cross qemu-user
CROSS_TRIPLET_arm64 := aarch64-linux-gnu
CROSS_TRIPLET_armhf := arm-linux-gnueabihf
CROSS_TRIPLET_s390x := s390x-linux-gnu
CROSS_QEMU_arm64 := qemu-aarch64
CROSS_QEMU_armhf := qemu-arm
CROSS_QEMU_s390x := qemu-s390x
CROSS_ISAS_arm64 := neon scalar
CROSS_ISAS_armhf := scalar
CROSS_ISAS_s390x := scalar
CROSS_ARCHS := arm64 armhf s390x
.PHONY: $(CROSS_ARCHS:%=test-%) $(CROSS_ARCHS:%=cross-%)
$(CROSS_ARCHS:%=cross-%): cross-%:
	$(MAKE) BUILD=build-$* CC=$(CROSS_TRIPLET_$*)-gcc build-$*/satdifuser $(TEST_SRC:tests/%.c=build-$*/tests/%) \
	  $(EXAMPLE_SRC:examples/%.c=build-$*/examples/%)
$(CROSS_ARCHS:%=test-%): test-%: cross-%
	@sh tests/run_cross.sh "$*" "$(CROSS_QEMU_$*) -cpu max -L /usr/$(CROSS_TRIPLET_$*)" "$(CROSS_ISAS_$*)" \
	  build-$*/satdifuser $(TEST_SRC:tests/%.c=build-$*/tests/%)
# the CLI inside build-<arch>/ (a cross build's binary must not take the native one's place)
$(BUILD)/satdifuser: $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

# The main job on the bundled default: a tiny random diffusion pipeline and 27 real
# Sentinel-2 chips with land-cover masks (tests/data/demo): extract -> train -> eval -> predict.
DEMO_OUT ?= demo_out
demo: satdifuser$(EXE_SUFFIX)
	@# extract resumes: features left by an earlier build would be reused, not recomputed
	rm -rf $(DEMO_OUT)/features
	./satdifuser extract --model tests/data/tiny_pipeline --input tests/data/demo/images \
	  --out $(DEMO_OUT)/features --size 64 --bands 3,2,1 --scale clip
	./satdifuser train --features $(DEMO_OUT)/features --labels tests/data/demo/labels.csv --task seg \
	  --fuser gw --out $(DEMO_OUT)/run --force --epochs 30 --warmup-epochs 2 --batch-size 6 --eval-every 3 \
	  --patience 0 --lr 0.01 --projection-dim 32 --num-norm-groups 8 --channels 32
	./satdifuser eval --run $(DEMO_OUT)/run --features $(DEMO_OUT)/features \
	  --labels tests/data/demo/labels.csv --split test
	./satdifuser predict --model tests/data/tiny_pipeline --head $(DEMO_OUT)/run \
	  --input tests/data/demo/images/s4_r1_c1.npy --out $(DEMO_OUT)/s4_r1_c1_prediction.png
	@echo "demo done: metrics in $(DEMO_OUT)/run/metrics_test.json, prediction $(DEMO_OUT)/s4_r1_c1_prediction.png"
	@# figures (docs/figures.md); train and eval wrote run/training_curves.png and run/confusion_test.png
	./satdifuser figures features --features $(DEMO_OUT)/features --id s4_r1_c1,s2_r0_c0 \
	  --out $(DEMO_OUT)/features_pca.png
	./satdifuser figures mixing --run $(DEMO_OUT)/run --out $(DEMO_OUT)/mixing_weights.png
	./satdifuser figures overlay --pred $(DEMO_OUT)/s4_r1_c1_prediction.png --input tests/data/demo/images/s4_r1_c1.npy \
	  --labels tests/data/demo/labels.csv --out $(DEMO_OUT)/s4_r1_c1_overlay.png
	@echo "figures: $(DEMO_OUT)/run/training_curves.png $(DEMO_OUT)/run/confusion_test.png $(DEMO_OUT)/features_pca.png $(DEMO_OUT)/mixing_weights.png $(DEMO_OUT)/s4_r1_c1_overlay.png"

# libFuzzer targets for the file decoders (tests/fuzz, docs/fuzzing.md); needs clang.
# Not part of `make test`. Run e.g. build/fuzz/fuzz_png -max_total_time=60 CORPUS_DIR
FUZZ_CC    ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
              -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Isrc -I.
FUZZ_BASE  := src/core/error.c src/core/half.c src/io/file.c
FUZZ_SRC_png         := src/io/png.c src/io/inflate.c
FUZZ_SRC_inflate     := src/io/inflate.c
FUZZ_SRC_tiff        := src/io/tiff.c src/io/inflate.c src/io/npy.c
FUZZ_SRC_npy         := src/io/npy.c
FUZZ_SRC_json        := src/io/json.c
FUZZ_TORCH_IO        := src/io/torch_file.c src/io/pickle.c src/io/zip.c
FUZZ_SRC_safetensors := src/io/safetensors.c src/io/json.c $(FUZZ_TORCH_IO)
FUZZ_SRC_zip         := src/io/zip.c
FUZZ_SRC_pickle      := src/io/pickle.c
FUZZ_SRC_torch       := src/io/safetensors.c src/io/json.c $(FUZZ_TORCH_IO)
FUZZ_SRC_hdf5        := src/io/hdf5.c src/io/hdf5_index.c src/io/hdf5_read.c src/io/inflate.c src/io/npy.c
FUZZ_SRC_geobench    := src/io/geobench_meta.c src/io/pickle.c
FUZZ_SRC_jpeg        := src/io/jpeg.c src/io/jpeg_huff.c src/io/jpeg_idct.c
FUZZ_SRC_image       := src/io/image.c src/io/png.c src/io/tiff.c src/io/npy.c src/io/inflate.c $(FUZZ_SRC_jpeg)
FUZZ_SRC_labels      := src/io/labels.c src/io/png.c src/io/npy.c src/io/inflate.c
# dataset.c needs the feature layout of src/fusion, which links the fusers and their kernels
FUZZ_SRC_feature_cache := src/io/feature_cache.c src/train/dataset.c src/io/labels.c src/io/safetensors.c $(FUZZ_TORCH_IO) \
              src/io/json.c src/io/png.c src/io/npy.c src/io/inflate.c src/core/tensor.c src/core/runtime.c \
              $(wildcard src/fusion/*.c) $(wildcard src/kernels/*.c)
FUZZ_TARGETS := png inflate tiff npy json safetensors image labels feature_cache zip pickle torch hdf5 jpeg geobench
fuzz:
	@if command -v $(FUZZ_CC) >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory $(FUZZ_TARGETS:%=build/fuzz/fuzz_%); \
	else echo "make fuzz: clang with libFuzzer is needed ($(FUZZ_CC) not found; set FUZZ_CC=...)"; fi

# fuzz_<name> is tests/fuzz/fuzz_<name>.c with the sources FUZZ_SRC_<name> (rebuilt when they change)
.SECONDEXPANSION:
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $$(FUZZ_SRC_$$*) $(FUZZ_BASE)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) $< $(FUZZ_SRC_$*) $(FUZZ_BASE) -lm -o $@

clean:
	rm -rf build build-asan satdifuser satdifuser-asan $(DEMO_OUT)

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
