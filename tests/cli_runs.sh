#!/bin/sh
# Issue 18 (real data as users have it), the training-run findings, on the small synthetic feature
# set of tests/data/learning_check (3 classes, 64 train / 16 val / 16 test; no extraction needed) and
# 4x4 masks made here for a segmentation run:
#   1. labels whose '# classes:' line disagrees with the head (fewer names crashed eval, exit 139;
#      more were ignored): a clear error; labels without names work.
# Usage: sh tests/cli_runs.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
D="$(pwd)/tests/data/learning_check"
T=$(mktemp -d /tmp/satdifuser_cli_runs.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_runs: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"
HEAD="--fuser gw --corrected --projection-dim 16 --num-norm-groups 4 --channels 16 --patience 0 --quiet"

# labels: the learning-check CSV with 3, 2, 4 and no class names
{ echo "# classes: water,forest,field"; cat "$D/labels.csv"; } > "$T/c3.csv"
{ echo "# classes: water,forest"; sed 's/,2$/,1/' "$D/labels.csv"; } > "$T/c2.csv"
{ echo "# classes: water,forest,field,road"; cat "$D/labels.csv"; } > "$T/c4.csv"
cp "$D/labels.csv" "$T/c0.csv"
# segmentation: a 4x4 uint8 NPY mask per image (its class in the top rows, 0 below)
npy_u8_4x4() {  # $1 = file, $2 = class
  hdr="{'descr': '|u1', 'fortran_order': False, 'shape': (4, 4), }"
  pad=$((117 - ${#hdr}))
  { printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf "%${pad}s" ""; printf '\n'
    for i in 1 2 3 4 5 6 7 8; do printf "\\00$2"; done; head -c 8 /dev/zero; } > "$1"
}
mkdir -p "$T/masks"
for c in 0 1 2; do npy_u8_4x4 "$T/masks/m$c.npy" $c; done
{ echo "# classes: water,forest,field"; sed -n 's/^\(img[0-9]*\),\([a-z]*\),\([0-9]\)$/\1,\2,masks\/m\3.npy/p' "$D/labels.csv"; } > "$T/s3.csv"
sed 's/^# classes:.*/# classes: water,forest/' "$T/s3.csv" > "$T/s2.csv"

# --- finding 1: class names against the head's classes ---
$S train --features "$D/features" --labels "$T/c3.csv" --task cls $HEAD --epochs 2 --warmup-epochs 1 \
  --batch-size 16 --out "$T/cls" > "$T/cls.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/cls/best.safetensors" ]' "cls run ($(tail -n 2 "$T/cls.log"))"
$S eval --run "$T/cls" --features "$D/features" --labels "$T/c2.csv" > "$T/e1.log" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "c2.csv names 2 classes" "$T/e1.log" && grep -q "head_config.json has 3" "$T/e1.log"' \
  "eval, 2 names for 3 classes: exit $rc (139 = the crash), $(tail -n 1 "$T/e1.log")"
$S eval --run "$T/cls" --features "$D/features" --labels "$T/c4.csv" > "$T/e2.log" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "c4.csv names 4 classes" "$T/e2.log"' "eval, 4 names for 3 classes: exit $rc, $(tail -n 1 "$T/e2.log")"
$S eval --run "$T/cls" --features "$D/features" --labels "$T/c0.csv" --json "$T/e3.json" > "$T/e3.log" 2>&1
check '[ $? -eq 0 ] && grep -q "accuracy" "$T/e3.json"' "eval, labels without names ($(tail -n 1 "$T/e3.log"))"
$S train --features "$D/features" --labels "$T/c3.csv" --task cls $HEAD --epochs 2 --warmup-epochs 1 \
  --num-classes 4 --out "$T/cls4" > "$T/t4.log" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "c3.csv names 3 classes" "$T/t4.log" && grep -q "num-classes has 4" "$T/t4.log"' \
  "train --num-classes 4 with 3 names: exit $rc, $(tail -n 1 "$T/t4.log")"
$S train --features "$D/features" --labels "$T/s3.csv" --task seg $HEAD --epochs 1 --warmup-epochs 0 \
  --batch-size 16 --out "$T/seg" > "$T/seg.log" 2>&1
check '[ $? -eq 0 ] && grep -q "\"forest\"" "$T/seg/metrics.json"' "seg run, class names in metrics.json ($(tail -n 2 "$T/seg.log"))"
$S eval --run "$T/seg" --features "$D/features" --labels "$T/s2.csv" > "$T/e4.log" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "s2.csv names 2 classes" "$T/e4.log"' "seg eval, 2 names for 3 classes: exit $rc, $(tail -n 1 "$T/e4.log")"

echo "RESULT $pass $fail"
