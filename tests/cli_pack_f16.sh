#!/bin/sh
# CLI test of f16 resident weights (issue 21) and `pack --precision f16` (issue 20) on the bundled
# tiny pipeline:
# - extract --precision f16 from the folder and from a file packed with --precision f16 give the
#   same feature tensors (the files differ only in the "model" path they record), with no notice
#   (the f16 panels are mapped as they are), recorded as compute_precision f16, and not f32's;
# - an f32 packed file runs at f16 (rounded at load, with a notice naming it): the same features;
# - an f16 packed file at f32 is refused naming --precision f16; pack --precision bf16 is refused.
# Usage: sh tests/cli_pack_f16.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
T=$(mktemp -d /tmp/satdifuser_cli_pack_f16.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_pack_f16: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 2"
PIPE="$ROOT/tests/data/tiny_pipeline"
IMG="$ROOT/tests/data/demo/images/s4_r1_c1.npy"
X="--input $IMG --size 64 --bands 3,2,1 --scale clip"
F=s4_r1_c1.safetensors
# tensors and metadata of a feature file but the model path it records
content() { $S info --digest "$1" | tail -n +2 | grep -v ' metadata model = '; }

$S extract --model "$PIPE" $X --out "$T/f16_dir" --precision f16 > "$T/e1" 2>&1
check '[ $? -eq 0 ]' "extract --precision f16: $(cat "$T/e1")"
$S info "$T/f16_dir/$F" > "$T/i1" 2>&1
check 'grep -q "compute_precision = f16" "$T/i1"' "the features record compute_precision f16: $(grep metadata "$T/i1")"
$S extract --model "$PIPE" $X --out "$T/f32_dir" --quiet
check '[ "$(content "$T/f16_dir/$F")" != "$(content "$T/f32_dir/$F")" ]' "f16 features equal f32's: f16 did not run"

$S pack --model "$PIPE" --out "$T/t16.sdpack" --precision f16 > "$T/p1" 2>&1; rc=$?
if grep -q "big-endian" "$T/p1"; then  # refused with its reason on big-endian hosts (s390x under qemu)
  echo "SKIP cli_pack_f16 (packed files): packed model files are for little-endian machines"
  echo "RESULT $pass $fail"; exit $([ $fail -eq 0 ] && echo 0 || echo 1)
fi
check '[ $rc -eq 0 ] && grep -q "f16)" "$T/p1"' "pack --precision f16: $(cat "$T/p1")"
$S pack --model "$PIPE" --out "$T/t32.sdpack" > /dev/null 2>&1
s16=$(wc -c < "$T/t16.sdpack"); s32=$(wc -c < "$T/t32.sdpack")
check '[ $((s16 * 10)) -lt $((s32 * 7)) ]' "the f16 file is not smaller: $s16 vs $s32 bytes"
$S info "$T/t16.sdpack" > "$T/i2" 2>&1
check 'grep -q "metadata pack.precision = f16" "$T/i2" && grep "weight.packed " "$T/i2" | grep -q F16' "info on the f16 pack"
$S extract --model "$T/t16.sdpack" $X --out "$T/f16_pack" --precision f16 > "$T/e2" 2>&1
check '[ $? -eq 0 ] && [ "$(content "$T/f16_dir/$F")" = "$(content "$T/f16_pack/$F")" ]' \
  "f16 pack features differ from the folder's at f16: $(cat "$T/e2")"
check '! grep -q note "$T/e2"' "the f16 pack was converted at load: $(cat "$T/e2")"
$S extract --model "$T/t32.sdpack" $X --out "$T/f16_p32" --precision f16 > "$T/e3" 2>&1
check '[ $? -eq 0 ] && grep -q "rounded to f16 at load" "$T/e3" && [ "$(content "$T/f16_dir/$F")" = "$(content "$T/f16_p32/$F")" ]' \
  "f32 pack at f16: $(cat "$T/e3")"
$S extract --model "$T/t16.sdpack" $X --out "$T/f32_p16" > "$T/e4" 2>&1; rc=$?
check '[ $rc -ne 0 ] && grep -q -- "--precision f16" "$T/e4" && [ ! -e "$T/f32_p16/$F" ]' "f16 pack at f32 (exit $rc): $(cat "$T/e4")"
$S pack --model "$PIPE" --out "$T/b.sdpack" --precision bf16 > "$T/p2" 2>&1
check '[ $? -eq 2 ] && [ ! -e "$T/b.sdpack" ]' "pack --precision bf16: $(cat "$T/p2")"
echo "RESULT $pass $fail"
