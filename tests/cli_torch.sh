#!/bin/sh
# CLI test of PyTorch checkpoints (issue 16), on files made by weights_tools/make_torch_checkpoints.py
# with torch 1.13 (tests/data/torch, tests/data/diffusionsat_tiny):
# - a DiffusionSat release layout of .bin files (root vae/, sharded text_encoder/, UNet only in
#   checkpoint-150000/unet) gives the same feature tensors as the same weights in safetensors, and a root
#   without unet/ names the --unet option;
# - info lists .pth tensors and top-level entries; convert --out FILE.safetensors [--key] copies tensors
#   exactly; a Lightning .ckpt converts to the same pipeline folder as the safetensors checkpoint;
# - import-head makes a run folder eval/predict accept from run.py's checkpoints;
# - hostile files: exit 1, nothing executed, nothing written.
# Usage: sh tests/cli_torch.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
DS="$ROOT/tests/data/diffusionsat_tiny"
TD="$ROOT/tests/data/torch"
IMG="$ROOT/tests/data/demo/images/s4_r1_c1.npy"
T=$(mktemp -d /tmp/satdifuser_cli_torch.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_torch: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 2"
EXTRACT="--input $IMG --size 64 --bands 3,2,1 --scale clip --quiet"
# tensors (names, dtypes, shapes, byte digests) of a file, whatever its metadata
tensors() { $S info --digest "$1" | grep -v ' metadata ' | tail -n +2 | sort; }

# 1. DiffusionSat layout: the root has no unet/
$S extract --model "$DS" $EXTRACT --out "$T/f0" > "$T/e0" 2>&1
check '[ $? -eq 2 ] && grep -q -- "--unet .*checkpoint-150000/unet" "$T/e0" && [ ! -e "$T/f0/s4_r1_c1.safetensors" ]' \
  "root without unet/: $(cat "$T/e0")"
$S extract --model "$DS" --unet "$DS/checkpoint-150000/unet" $EXTRACT --out "$T/fbin" > "$T/e1" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/fbin/s4_r1_c1.safetensors" ]' "extract from .bin weights: $(cat "$T/e1")"
# the same weights as safetensors: each component converted tensor by tensor (exact copies)
mkdir -p "$T/st/unet" "$T/st/vae" "$T/st/text_encoder"
cp -r "$DS/tokenizer" "$DS/scheduler" "$DS/model_index.json" "$T/st/"
cp "$DS/checkpoint-150000/unet/config.json" "$T/st/unet/"
cp "$DS/vae/config.json" "$T/st/vae/"
cp "$DS/text_encoder/config.json" "$T/st/text_encoder/"
$S convert --from "$DS/checkpoint-150000/unet/diffusion_pytorch_model.bin" --out "$T/st/unet/diffusion_pytorch_model.safetensors" --quiet &&
$S convert --from "$DS/vae/diffusion_pytorch_model.bin" --out "$T/st/vae/diffusion_pytorch_model.safetensors" --quiet &&
$S convert --from "$DS/text_encoder/pytorch_model.bin.index.json" --out "$T/st/text_encoder/model.safetensors" --quiet
check '[ $? -eq 0 ]' "convert .bin components to safetensors"
$S extract --model "$T/st" $EXTRACT --out "$T/fst" > "$T/e2" 2>&1
check '[ $? -eq 0 ] && [ "$(tensors "$T/fbin/s4_r1_c1.safetensors")" = "$(tensors "$T/fst/s4_r1_c1.safetensors")" ]' \
  ".bin and safetensors weights give other features: $(cat "$T/e2")"
# safetensors wins when both are there: a broken .bin beside the safetensors is never read
printf 'PK broken' > "$T/st/vae/diffusion_pytorch_model.bin"
$S extract --model "$T/st" $EXTRACT --out "$T/fst2" > "$T/e3" 2>&1
check '[ $? -eq 0 ] && [ "$(tensors "$T/fst/s4_r1_c1.safetensors")" = "$(tensors "$T/fst2/s4_r1_c1.safetensors")" ]' \
  "safetensors beside .bin: $(cat "$T/e3")"

# 2. info and convert --key on run.py's checkpoint
$S info "$TD/runpy_head_cls.pth" > "$T/i1" 2>&1
check '[ $? -eq 0 ] && grep -q "metadata epoch = 2" "$T/i1" && grep -q "decoder_net.mixing_weights .*F32  (63)" "$T/i1" && grep -q "config = <omegaconf.dictconfig.DictConfig object>" "$T/i1"' \
  "info .pth: $(head -5 "$T/i1")"
$S convert --from "$TD/runpy_head_cls.pth" --key decoder_net --out "$T/head.safetensors" > "$T/c1" 2>&1
check '[ $? -eq 0 ] && [ "$($S info --digest --key decoder_net "$TD/runpy_head_cls.pth" | tail -n +2 | grep -v metadata | sort)" = "$(tensors "$T/head.safetensors")" ]' \
  "convert --key decoder_net: $(cat "$T/c1")"
check '! $S info "$T/head.safetensors" | grep -q "decoder_net\."' "--key names are relative to the key"
$S convert --from "$TD/runpy_head_cls.pth" --key no.such --out "$T/none.safetensors" > "$T/c2" 2>&1
check '[ $? -eq 1 ] && grep -q "no entry" "$T/c2" && [ ! -e "$T/none.safetensors" ]' "convert --key missing: $(cat "$T/c2")"
$S convert --from "$TD/zip_dtypes.pt" --out "$T/dtypes.safetensors" --quiet
check '[ "$(tensors "$T/dtypes.safetensors")" = "$(tensors "$TD/zip_dtypes.pt.expected.safetensors")" ]' "convert keeps every dtype exactly"

# 3. the authors' head as a run folder
$S extract --model "$ROOT/tests/data/tiny_pipeline" $EXTRACT --out "$T/feat" > /dev/null 2>&1
$S import-head --from "$TD/runpy_head_cls.pth" --features "$T/feat" --out "$T/run" > "$T/h0" 2>&1
check '[ $? -eq 1 ] && grep -q "num-norm-groups" "$T/h0" && [ ! -e "$T/run/head_config.json" ]' "import-head default groups: $(cat "$T/h0")"
$S import-head --from "$TD/runpy_head_cls.pth" --features "$T/feat" --out "$T/run" --num-norm-groups 2 > "$T/h1" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/run/head_config.json" ] && [ -f "$T/run/best.safetensors" ] && [ -f "$T/run/features_meta.json" ]' \
  "import-head: $(cat "$T/h1")"
$S predict --head "$T/run" --features "$T/feat/s4_r1_c1.safetensors" --out "$T/p.json" > "$T/p1" 2>&1
check '[ $? -eq 0 ] && grep -q "\"scores\"" "$T/p.json"' "predict with the imported head: $(cat "$T/p1")"
$S import-head --from "$TD/runpy_head_seg.pth" --features "$T/feat" --out "$T/run2" --num-norm-groups 2 > "$T/h2" 2>&1
check '[ $? -eq 1 ] && grep -q -- "--layers conv2" "$T/h2"' "import-head with the wrong layers: $(cat "$T/h2")"

# 4. hostile files: refused, nothing executed, nothing written
rm -f /tmp/satdifuser_hostile_executed
n=0; refused=0
for f in "$TD"/hostile/*.pt; do
  case "$f" in */control_*) continue ;; esac
  n=$((n + 1))
  $S convert --from "$f" --out "$T/h.safetensors" > "$T/hx" 2>&1; rc=$?
  if [ $rc -eq 1 ] && [ ! -e "$T/h.safetensors" ] && grep -q "$(basename "$f")" "$T/hx"; then refused=$((refused + 1)); else echo "not refused: $f (exit $rc): $(cat "$T/hx")"; fi
  rm -f "$T/h.safetensors"
done
check '[ $n -gt 20 ] && [ $refused -eq $n ]' "hostile files: $refused of $n refused"
check '[ ! -e /tmp/satdifuser_hostile_executed ]' "a hostile payload ran"
$S info "$TD/hostile/control_ok.pt" > "$T/ok" 2>&1
check '[ $? -eq 0 ] && grep -q "^  w  .*F32  (2, 2)" "$T/ok"' "the control file loads: $(cat "$T/ok")"

# 5. golden cases with weights.bin (torch.save of the same state_dict, weights_tools/make_golden_bin.py)
# in place of weights.safetensors: every case passes; a wrong .bin fails; safetensors wins beside a .bin
GB="$TD/golden_bin"
gcases="unet_metadata vae_encoder_a clip_text_gelu head_gw_multilabel_t2 train_gw_multilabel"
mkdir -p "$T/gbin"
for c in $gcases; do
  mkdir -p "$T/gbin/$c"
  cp "$ROOT/golden/$c/case.json" "$ROOT/golden/$c/tensors.safetensors" "$T/gbin/$c/"
  cp "$GB/$c.weights.bin" "$T/gbin/$c/weights.bin"
done
$S golden "$T/gbin" > "$T/g1" 2>&1; rc=$?
check '[ $rc -eq 0 ] && [ "$(grep -c "^PASS" "$T/g1")" -eq 5 ] && grep -q "^golden: 5 passed, 0 failed" "$T/g1" && [ -z "$(ls "$T"/gbin/*/weights.safetensors 2>/dev/null)" ]' \
  "golden cases with weights.bin: $(grep -E "^(FAIL|golden:)|error" "$T/g1")"
mkdir -p "$T/gbad/head_gw_multilabel_t2"
cp "$T/gbin/head_gw_multilabel_t2/case.json" "$T/gbin/head_gw_multilabel_t2/tensors.safetensors" "$T/gbad/head_gw_multilabel_t2/"
cp "$GB/train_gw_multilabel.weights.bin" "$T/gbad/head_gw_multilabel_t2/weights.bin"
$S golden "$T/gbad" > "$T/g2" 2>&1
check '[ $? -eq 1 ] && ! grep -q "^PASS" "$T/g2"' "another case's weights.bin passed: $(tail -3 "$T/g2")"
cp "$ROOT/golden/head_gw_multilabel_t2/weights.safetensors" "$T/gbad/head_gw_multilabel_t2/"
printf 'PK broken' > "$T/gbad/head_gw_multilabel_t2/weights.bin"
$S golden "$T/gbad" > "$T/g3" 2>&1
check '[ $? -eq 0 ] && grep -q "^PASS" "$T/g3"' "weights.safetensors beside a broken weights.bin: $(tail -3 "$T/g3")"

# 5. the LDM single-file conversion from a Lightning .ckpt (weights under "state_dict"): the same
# pipeline folder as from the same tensors in safetensors (weights_tools/make_ldm_ckpt.py)
$S convert --from "$ROOT/tests/data/tiny_ldm.ckpt" --out "$T/cv_ckpt" --config-from "$ROOT/tests/data/tiny_pipeline" --quiet > "$T/cv1" 2>&1
check '[ $? -eq 0 ]' "convert .ckpt: $(cat "$T/cv1")"
$S convert --from "$ROOT/tests/data/tiny_ldm.safetensors" --out "$T/cv_st" --config-from "$ROOT/tests/data/tiny_pipeline" --quiet > "$T/cv2" 2>&1
check 'diff -r "$T/cv_ckpt" "$T/cv_st" > /dev/null' ".ckpt and .safetensors convert to other folders"

echo "RESULT $pass $fail"
