#!/bin/sh
# CLI test of `extract --batch B` (issue 20): feature files byte-identical to --batch 1 (the whole
# file: tensors and metadata), with images of two sizes mixed in one list (batched by size, in order),
# at 1 and 2 threads; a bad --batch is a usage error.
# Usage: sh tests/cli_batch.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
T=$(mktemp -d /tmp/satdifuser_cli_batch.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_batch: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
D="$ROOT/tests/data/demo/images"
# 5 demo chips (64x64 after --size 64) and one 30x40 TIFF between them (64x85 after --size 64) (another latent size)
{ echo "$D/s4_r1_c1.npy"; echo "$D/s4_r1_c2.npy"; echo "$ROOT/tests/data/tiff_mm_f32_lzw_pred3_rgb.tif"; echo "$D/s4_r2_c1.npy"
  echo "$D/s4_r2_c2.npy"; echo "$D/s2_r0_c0.npy"; } > "$T/list.txt"
X="extract --model $ROOT/tests/data/tiny_pipeline --input $T/list.txt --size 64 --scale clip --quiet"
$BIN --threads 2 $X --out "$T/b1" > "$T/e1" 2>&1
check '[ $? -eq 0 ] && [ "$(ls -A "$T/b1" | grep -c safetensors)" -eq 7 ]' "batch 1: $(cat "$T/e1")"
for t in 1 2; do
  $BIN --threads $t $X --out "$T/b3_$t" --batch 3 > "$T/e3" 2>&1
  check '[ $? -eq 0 ]' "batch 3, $t threads: $(cat "$T/e3")"
  same=1
  for f in "$T"/b1/*.safetensors; do cmp -s "$f" "$T/b3_$t/$(basename "$f")" || { same=0; echo "differs: $(basename "$f")"; }; done
  check '[ $same -eq 1 ]' "batch 3 at $t threads: other feature files than batch 1"
done
$BIN $X --out "$T/b0" --batch 0 > "$T/e0" 2>&1
check '[ $? -eq 2 ] && grep -q -- "--batch" "$T/e0"' "--batch 0: $(cat "$T/e0")"
echo "RESULT $pass $fail"
