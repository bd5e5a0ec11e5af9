#!/bin/sh
# CLI test of `satdifuser convert` on tests/data/tiny_ldm.safetensors (the tiny pipeline in the
# LDM/CompVis single-file layout, made by weights_tools/make_ldm_checkpoint.py):
# - with --config-from tests/data/tiny_pipeline every file of the result is byte-identical to the
#   pipeline's (weights: names, dtypes, shapes, values; configs; tokenizer), and `satdifuser extract`
#   gives byte-identical features from both folders;
# - --dtype f32 (exact widening of the f16 weights) gives the same features too; --dtype f16 loads;
# - configs missing from --config-from are built (scheduler and model_index byte-identical to the
#   pipeline's); without a tokenizer the output says it must be added, --tokenizer adds it;
# - bad input (not safetensors, a broken zip, a diffusers file, unguessable configs), an existing --out,
#   and a conversion stopped by SIGTERM leave nothing behind (no OUT, no OUT.tmp.*).
# Usage: sh tests/cli_convert.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
PIPE="$ROOT/tests/data/tiny_pipeline"
CKPT="$ROOT/tests/data/tiny_ldm.safetensors"
T=$(mktemp -d /tmp/satdifuser_cli_convert.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_convert: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
C="$BIN --threads 1 convert"
nothing_left() { [ ! -e "$1" ] && [ -z "$(ls -d "$1".tmp.* 2>/dev/null)" ]; }
same_files() {  # every file of the pipeline $1 (but its README) is in $2, byte-identical, and nothing else
  for f in $(cd "$1" && find . -type f ! -name README.md | sort); do
    cmp -s "$1/$f" "$2/$f" || { echo "differs: $f"; return 1; }
  done
  for f in $(cd "$2" && find . -type f | sort); do [ -f "$1/$f" ] || { echo "extra: $f"; return 1; }; done
  return 0
}
# Two feature files with the same tensors and metadata but for model_fingerprint (a hash of the
# weight files' bytes, which differ when the dtype does).
header() { n=$(od -An -tu8 -N8 "$1" | tr -d ' '); dd if="$1" bs=1 skip=8 count="$n" 2>/dev/null | sed 's/"model_fingerprint":"[0-9a-f]*"//'; }
data() { n=$(od -An -tu8 -N8 "$1" | tr -d ' '); tail -c +$((n + 9)) "$1"; }
same_features() {
  [ "$(header "$1")" = "$(header "$2")" ] && data "$1" > "$T/d1" && data "$2" > "$T/d2" && cmp -s "$T/d1" "$T/d2"
}
features() {  # features of one demo image with the pipeline folder $1, through the same path $T/model
  rm -f "$T/model"; ln -s "$1" "$T/model"
  rm -rf "$T/feat"
  "$BIN" --threads 1 extract --model "$T/model" --input "$ROOT/tests/data/demo/images/s2_r0_c0.npy" \
    --out "$T/feat" --size 64 --bands 3,2,1 --scale clip --quiet 2> "$T/extract.err" &&
  cp "$T/feat/s2_r0_c0.safetensors" "$2"
}

# --help and usage errors
$C --help > "$T/help.txt" 2>&1
check '[ $? -eq 0 ] && grep -q -- "--config-from" "$T/help.txt"' "--help"
$C --out "$T/x" > /dev/null 2>&1
check '[ $? -eq 2 ]' "missing --from is a usage error"
$C --from "$CKPT" --out "$T/x" --dtype f8 > "$T/err.txt" 2>&1
check '[ $? -eq 2 ] && grep -q "dtype" "$T/err.txt"' "bad --dtype"

# 1. the round trip: byte-identical files
$C --from "$CKPT" --out "$T/conv" --config-from "$PIPE" > "$T/conv.out" 2>&1
check '[ $? -eq 0 ] && [ -d "$T/conv" ]' "convert: $(cat "$T/conv.out")"
same_files "$PIPE" "$T/conv" > "$T/same.txt"
check '[ $? -eq 0 ]' "converted folder differs from the pipeline: $(cat "$T/same.txt")"
check 'grep -q "2 of 3 layers" "$T/conv.out" && grep -q "loads back" "$T/conv.out"' "summary: $(cat "$T/conv.out")"
check 'nothing_left "$T/conv.absent" && [ -z "$(ls -d "$T"/conv.tmp.* 2>/dev/null)" ]' "temporary folder left"

# 2. the same features from the original and the converted folder
features "$PIPE" "$T/f_orig.safetensors"
check '[ $? -eq 0 ]' "extract on the pipeline: $(cat "$T/extract.err")"
features "$T/conv" "$T/f_conv.safetensors"
check '[ $? -eq 0 ] && cmp -s "$T/f_orig.safetensors" "$T/f_conv.safetensors"' \
  "features of the converted folder differ: $(cat "$T/extract.err")"

# 3. --dtype f32: every weight widened exactly, the same features; --dtype f16 loads
$C --from "$CKPT" --out "$T/f32" --config-from "$PIPE" --dtype f32 --quiet 2> "$T/f32.err"
"$BIN" info "$T/f32/unet/diffusion_pytorch_model.safetensors" > "$T/f32.txt" 2>&1
check '[ -d "$T/f32" ] && grep -q "conv_in.weight .*F32" "$T/f32.txt" && ! grep -q " F16 " "$T/f32.txt"' \
  "--dtype f32: $(cat "$T/f32.err")"
features "$T/f32" "$T/f_f32.safetensors"
check '[ $? -eq 0 ] && same_features "$T/f_orig.safetensors" "$T/f_f32.safetensors"' \
  "--dtype f32 features differ"
$C --from "$CKPT" --out "$T/f16" --config-from "$PIPE" --dtype f16 --quiet 2> "$T/f16.err"
"$BIN" info "$T/f16/vae/diffusion_pytorch_model.safetensors" > "$T/f16.txt" 2>&1
check '[ -d "$T/f16" ] && grep -q "encoder.conv_in.weight .*F16" "$T/f16.txt"' "--dtype f16: $(cat "$T/f16.err")"

# 4. configs missing from --config-from are built from the shapes; the tokenizer
cp -r "$PIPE" "$T/cfg" && rm -r "$T/cfg/scheduler" "$T/cfg/model_index.json" "$T/cfg/tokenizer"
$C --from "$CKPT" --out "$T/notok" --config-from "$T/cfg" > "$T/notok.out" 2>&1
check '[ $? -eq 0 ] && grep -q "tokenizer must be added" "$T/notok.out"' "no tokenizer: $(cat "$T/notok.out")"
check 'cmp -s "$T/notok/scheduler/scheduler_config.json" "$PIPE/scheduler/scheduler_config.json"' \
  "built scheduler_config.json differs from SD 2.1's"
check 'cmp -s "$T/notok/model_index.json" "$PIPE/model_index.json"' "built model_index.json differs"
check '[ -f "$T/notok/tokenizer/special_tokens_map.json" ] && grep -q "\"pad_token\": \"!\"" "$T/notok/tokenizer/special_tokens_map.json" && [ ! -f "$T/notok/tokenizer/vocab.json" ]' \
  "tokenizer settings without the vocabulary"
features "$T/notok" "$T/f_notok.safetensors"
check '[ $? -ne 0 ] && grep -q "vocab.json" "$T/extract.err"' "extract without vocab.json: $(cat "$T/extract.err")"
$C --from "$CKPT" --out "$T/tok" --config-from "$T/cfg" --tokenizer "$PIPE/tokenizer" > "$T/tok.out" 2>&1
check '[ $? -eq 0 ] && ! grep -q "tokenizer must be added" "$T/tok.out"' "--tokenizer: $(cat "$T/tok.out")"
features "$T/tok" "$T/f_tok.safetensors"
check '[ $? -eq 0 ] && cmp -s "$T/f_orig.safetensors" "$T/f_tok.safetensors"' "--tokenizer: features differ"

# 5. an existing --out: refused, or replaced with --force
$C --from "$CKPT" --out "$T/conv" --config-from "$PIPE" > "$T/exists.err" 2>&1
check '[ $? -eq 2 ] && grep -q "exists" "$T/exists.err"' "existing --out: $(cat "$T/exists.err")"
echo stale > "$T/conv/stale.txt"
$C --from "$CKPT" --out "$T/conv" --config-from "$PIPE" --force --quiet 2> "$T/force.err"
check '[ $? -eq 0 ] && [ ! -f "$T/conv/stale.txt" ] && same_files "$PIPE" "$T/conv" > /dev/null && [ -z "$(ls -d "$T"/conv.old.* 2>/dev/null)" ]' \
  "--force: $(cat "$T/force.err")"

# 6. stopped by SIGTERM after 100 tensors: nothing written
SATDIFUSER_TEST_STOP_AFTER=100 $C --from "$CKPT" --out "$T/stopped" --config-from "$PIPE" > "$T/stop.out" 2>&1
rc=$?
check '[ $rc -eq 143 ] && nothing_left "$T/stopped" && grep -q "nothing written" "$T/stop.out"' \
  "stopped conversion: exit $rc: $(cat "$T/stop.out")"

# 7. bad input: clear errors naming the file, nothing written
printf 'not a checkpoint at all' > "$T/text.safetensors"
$C --from "$T/text.safetensors" --out "$T/b1" > "$T/b1.err" 2>&1
check '[ $? -eq 1 ] && grep -q "text.safetensors" "$T/b1.err" && nothing_left "$T/b1"' "not safetensors: $(cat "$T/b1.err")"
printf 'PK\003\004 pretend zip' > "$T/model.ckpt"
$C --from "$T/model.ckpt" --out "$T/b2" > "$T/b2.err" 2>&1
check '[ $? -eq 1 ] && grep -q "model.ckpt: no zip end-of-central-directory record" "$T/b2.err" && nothing_left "$T/b2"' "broken zip: $(cat "$T/b2.err")"
$C --from "$PIPE/unet/diffusion_pytorch_model.safetensors" --out "$T/b3" > "$T/b3.err" 2>&1
check '[ $? -eq 1 ] && grep -q "unet/diffusion_pytorch_model.safetensors: already diffusers" "$T/b3.err" && nothing_left "$T/b3"' \
  "diffusers file: $(cat "$T/b3.err")"
$C --from "$T/missing.safetensors" --out "$T/b4" > "$T/b4.err" 2>&1
check '[ $? -eq 1 ] && grep -q "missing.safetensors" "$T/b4.err" && nothing_left "$T/b4"' "missing file: $(cat "$T/b4.err")"
# the tiny model's widths are not SD's: without --config-from its configs cannot be guessed
$C --from "$CKPT" --out "$T/b5" > "$T/b5.err" 2>&1
check '[ $? -eq 1 ] && grep -q -- "--config-from" "$T/b5.err" && nothing_left "$T/b5"' "no configs: $(cat "$T/b5.err")"
# a config that does not fit the checkpoint
cp -r "$PIPE" "$T/wrongcfg" && sed 's/"layers_per_block": 2/"layers_per_block": 1/' "$PIPE/unet/config.json" > "$T/wrongcfg/unet/config.json"
$C --from "$CKPT" --out "$T/b6" --config-from "$T/wrongcfg" > "$T/b6.err" 2>&1
check '[ $? -eq 1 ] && grep -q "wrongcfg/unet/config.json: .layers_per_block. is 1, the checkpoint" "$T/b6.err" && nothing_left "$T/b6"' \
  "mismatched config: $(cat "$T/b6.err")"

echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
