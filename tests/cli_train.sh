#!/bin/sh
# CLI test of `satdifuser train`, `eval` and `predict` on features of the tiny bundled
# pipeline and the demo chips: a full run; a run stopped by --max-steps and resumed gives
# the same best head byte for byte; eval reproduces train's test metrics; predict writes a
# palette PNG of the image's size; bad inputs give clear errors.
# Usage: sh tests/cli_train.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
MODEL="$ROOT/tests/data/tiny_pipeline"
LABELS="$ROOT/tests/data/demo/labels.csv"
T=$(mktemp -d /tmp/satdifuser_cli_train.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_train: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"

$S extract --model "$MODEL" --input "$ROOT/tests/data/demo/images" --out "$T/feat" --size 64 --bands 3,2,1 \
  --scale clip --quiet > "$T/extract.log" 2>&1
check '[ $? -eq 0 ] && [ $(ls "$T/feat" | grep -c "^s") -eq 27 ]' "extract the demo features"

TRAIN="train --features $T/feat --labels $LABELS --task seg --fuser gw --epochs 3 --warmup-epochs 1 \
  --batch-size 6 --eval-every 2 --patience 0 --projection-dim 16 --num-norm-groups 4 --channels 16 --quiet"
$S $TRAIN --out "$T/full" > "$T/full.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/full/best.safetensors" ] && [ -f "$T/full/metrics.json" ]' "full training run ($(tail -n 3 "$T/full.log"))"
check 'grep -q "mIoU" "$T/full/metrics.json"' "metrics.json has mIoU"

# stopped after 4 of 9 steps, then resumed: the same best head and the same test metrics
$S $TRAIN --out "$T/part" --max-steps 4 > "$T/part1.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/part/checkpoint.safetensors" ] && [ ! -f "$T/part/metrics.json" ]' "stopped run keeps a checkpoint"
check '[ -z "$(find "$T/part" -name "*.tmp*")" ]' "no temporary files left"
$S $TRAIN --out "$T/part" --resume > "$T/part2.log" 2>&1
check '[ $? -eq 0 ]' "resume ($(tail -n 2 "$T/part2.log"))"
check 'cmp -s "$T/full/best.safetensors" "$T/part/best.safetensors"' "resumed run gives the same best head"
check 'cmp -s "$T/full/metrics.json" "$T/part/metrics.json"' "resumed run gives the same test metrics"

# eval: the test split again, from the saved head
$S eval --run "$T/full" --features "$T/feat" --labels "$LABELS" --split test --json "$T/eval.json" > "$T/eval.log" 2>&1
check '[ $? -eq 0 ] && grep -q "mIoU" "$T/eval.log"' "eval prints a table"
m1=$(sed 's/.*"mIoU": \([^,]*\),.*/\1/' "$T/full/metrics.json"); m2=$(sed 's/.*"mIoU": \([^,]*\),.*/\1/' "$T/eval.json")
check '[ -n "$m1" ] && [ "$m1" = "$m2" ]' "eval mIoU ($m2) equals train's final test mIoU ($m1)"

# predict: a palette PNG of the image's size (32x32: IHDR width and height bytes)
$S predict --model "$MODEL" --head "$T/full" --input "$ROOT/tests/data/demo/images/s4_r1_c1.npy" --out "$T/pred.png" > "$T/pred.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/pred.png" ]' "predict writes a PNG ($(tail -n 2 "$T/pred.log"))"
ihdr=$(od -A n -t u1 -j 16 -N 8 "$T/pred.png" 2>/dev/null | tr -s ' ')
check '[ "$ihdr" = " 0 0 0 32 0 0 0 32" ]' "prediction is 32x32 (IHDR:$ihdr)"
check '[ -z "$(ls "$T" | grep features.tmp)" ]' "predict removes its temporary features"

# bad inputs
$S train --features "$T/nope" --labels "$LABELS" --task seg --out "$T/x" > "$T/e1.log" 2>&1
check '[ $? -eq 1 ] && grep -q "nope" "$T/e1.log"' "missing feature folder named"
printf 'image,split,label\ns2_r0_c0,train,1\nmissing_img,val,0\n' > "$T/l2.csv"
$S train --features "$T/feat" --labels "$T/l2.csv" --task cls --out "$T/y" > "$T/e2.log" 2>&1
check '[ $? -eq 1 ] && grep -q "missing_img" "$T/e2.log"' "image without a feature file named"
$S train --features "$T/feat" --labels "$LABELS" --task seg --out "$T/z" --epochs zero > "$T/e3.log" 2>&1
check '[ $? -eq 2 ]' "non-numeric option is a usage error"
$S eval --run "$T/nothing" --features "$T/feat" --labels "$LABELS" > "$T/e4.log" 2>&1
check '[ $? -ne 0 ] && grep -q "head_config.json" "$T/e4.log"' "eval of a missing run names the file"
# a mask with a class >= num_classes (4 named classes; 255 is the ignore value): found before anything is
# written or trained, with the file, the value, the pixel and num_classes named. The bad mask is a test
# image's (the last split evaluated), as a 32x32 uint8 NPY: zeros, 9 at row 3, column 5.
npy_u8_32x32() {  # $1 = output file; 9 at flat index 3*32+5
  hdr="{'descr': '|u1', 'fortran_order': False, 'shape': (32, 32), }"
  pad=$((117 - ${#hdr}))  # magic 6 + version 2 + length 2 + header 117 + newline = 128 bytes
  { printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf "%${pad}s" ""; printf '\n'
    head -c 101 /dev/zero; printf '\011'; head -c 922 /dev/zero; } > "$1"
}
mkdir -p "$T/badseg"
npy_u8_32x32 "$T/badseg/bad.npy"
sed -e "s|masks/|$ROOT/tests/data/demo/masks/|" -e "s|^s4_r2_c1,test,.*|s4_r2_c1,test,bad.npy|" "$LABELS" > "$T/badseg/labels.csv"
$S train --features "$T/feat" --labels "$T/badseg/labels.csv" --task seg --out "$T/badseg/run" --epochs 2 \
  --warmup-epochs 1 --projection-dim 16 --num-norm-groups 4 --channels 16 --quiet > "$T/e5.log" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "bad.npy" "$T/e5.log" && grep -q "class 9" "$T/e5.log" && grep -q "row 3, column 5" "$T/e5.log" && grep -q "num_classes 4" "$T/e5.log"' \
  "mask with a bad class: exit $rc, message: $(cat "$T/e5.log")"
check '[ -z "$(ls -A "$T/badseg/run" 2>/dev/null)" ]' "mask with a bad class: nothing written to the run folder ($(ls "$T/badseg/run" 2>/dev/null | tr '\n' ' '))"
# classification and multi-label: a class index >= --num-classes (no class names in the file) is refused
# up front too (multi-label used to write past its target buffer)
printf 'image,split,label\ns2_r0_c0,train,1\ns2_r0_c1,val,0\ns2_r0_c2,train,3\n' > "$T/l6.csv"
$S train --features "$T/feat" --labels "$T/l6.csv" --task cls --num-classes 2 --out "$T/cls6" --epochs 2 \
  --warmup-epochs 1 --projection-dim 16 --num-norm-groups 4 --corrected --quiet > "$T/e6.log" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "l6.csv:4" "$T/e6.log" && grep -q "num_classes 2" "$T/e6.log"' "cls label >= --num-classes: exit $rc, message: $(cat "$T/e6.log")"
check '[ -z "$(ls -A "$T/cls6" 2>/dev/null)" ]' "cls label >= --num-classes: nothing written"
printf 'image,split,label\ns2_r0_c0,train,1;0\ns2_r0_c1,val,0\ns2_r0_c2,train,0;5\n' > "$T/l7.csv"
$S train --features "$T/feat" --labels "$T/l7.csv" --task multilabel --num-classes 2 --out "$T/ml7" --epochs 2 \
  --warmup-epochs 1 --projection-dim 16 --num-norm-groups 4 --corrected --quiet > "$T/e7.log" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "l7.csv:4" "$T/e7.log" && grep -q "num_classes 2" "$T/e7.log"' "multilabel label >= --num-classes: exit $rc, message: $(cat "$T/e7.log")"
check '[ -z "$(ls -A "$T/ml7" 2>/dev/null)" ]' "multilabel label >= --num-classes: nothing written"
$S train --help > "$T/h.log" 2>&1
check '[ $? -eq 0 ] && grep -q -- "--resume" "$T/h.log"' "train --help"

echo "RESULT $pass $fail"
