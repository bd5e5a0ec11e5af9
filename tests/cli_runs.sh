#!/bin/sh
# Issue 18 (real data as users have it), the training-run findings, on the small synthetic feature
# set of tests/data/learning_check (3 classes, 64 train / 16 val / 16 test; no extraction needed) and
# 4x4 masks made here for a segmentation run:
#   1. labels whose '# classes:' line disagrees with the head (fewer names crashed eval, exit 139;
#      more were ignored): a clear error; labels without names work.
#   7. training runs: SIGINT acknowledged at once, exit 130, checkpoint kept; a second SIGINT stops at
#      once with the checkpoint whole; a folder holding a run is refused without --resume / --force;
#      progress as plain lines (no \r) in a log file; a last segmentation batch of 1 image (BatchNorm
#      cannot train on it) joins the one before; --projection-dim with a classifier.
#   8. output folders are checked before any computing (extract, train, eval, predict): a read-only
#      --out (SKIP when running as root makes it writable anyway) and /sys (unwritable even for root).
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


# --- finding 7: training runs ---
# a run folder is not overwritten: refused (exit 1, files untouched) without --resume or --force
cp "$T/cls/checkpoint.safetensors" "$T/ckpt_before"
$S train --features "$D/features" --labels "$T/c3.csv" --task cls $HEAD --epochs 2 --warmup-epochs 1 \
  --batch-size 16 --out "$T/cls" > "$T/r1.log" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "holds a training run" "$T/r1.log" && grep -q -- "--resume" "$T/r1.log" && grep -q -- "--force" "$T/r1.log" && cmp -s "$T/ckpt_before" "$T/cls/checkpoint.safetensors"' \
  "existing run folder refused: exit $rc, $(tail -n 1 "$T/r1.log")"
$S train --features "$D/features" --labels "$T/c3.csv" --task cls $HEAD --epochs 2 --warmup-epochs 1 \
  --batch-size 16 --out "$T/cls" --resume --force > "$T/r2.log" 2>&1
check '[ $? -eq 2 ]' "--resume with --force is a usage error"
$S train --features "$D/features" --labels "$T/c3.csv" --task cls $HEAD --epochs 2 --warmup-epochs 1 \
  --batch-size 16 --out "$T/cls" --force > "$T/r3.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/cls/metrics.json" ]' "--force starts over ($(tail -n 1 "$T/r3.log"))"

# --projection-dim with a classifier (the released classifier runs only at 384): the fuser gets it too
$S train --features "$D/features" --labels "$T/c3.csv" --task cls --fuser moe --projection-dim 16 --num-norm-groups 4 \
  --epochs 1 --warmup-epochs 0 --quiet --out "$T/pd" > "$T/pd.log" 2>&1
check '[ $? -eq 0 ] && grep -q "\"fuser_projection_dim\": 16" "$T/pd/head_config.json"' "--projection-dim 16 with a classifier ($(tail -n 1 "$T/pd.log"))"

# segmentation, 65 train images in batches of 16: the last batch of 1 joins the one before (UPerNet's
# BatchNorm fails on 1 image in its 1x1 pooling branch, mid-run); --batch-size 1 is refused up front
awk 'NR > 1 && /,val,/ && !done { sub(/,val,/, ",train,"); done = 1 } { print }' "$T/s3.csv" > "$T/s65.csv"
n65=$(grep -c ",train," "$T/s65.csv")
$S train --features "$D/features" --labels "$T/s65.csv" --task seg $HEAD --epochs 2 --warmup-epochs 1 \
  --batch-size 16 --out "$T/seg65" > "$T/seg65.log" 2>&1
rc=$?
check '[ $rc -eq 0 ] && [ $n65 -eq 65 ] && [ $(grep -c "\"event\": \"step\"" "$T/seg65/log.jsonl") -eq 8 ]' \
  "seg, 65 train images in batches of 16: 4 steps per epoch ($n65 train, exit $rc, $(tail -n 1 "$T/seg65.log"))"
$S train --features "$D/features" --labels "$T/s3.csv" --task seg $HEAD --epochs 2 --warmup-epochs 1 \
  --batch-size 1 --out "$T/seg1" > "$T/seg1.log" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "at least 2 images per batch" "$T/seg1.log" && [ ! -e "$T/seg1" ]' "seg --batch-size 1 refused: exit $rc, $(tail -n 1 "$T/seg1.log")"

# progress in a log file: plain lines from the start (evaluations included), no carriage returns
LONG="train --features $D/features --labels $T/c3.csv --task cls --fuser gw --corrected --projection-dim 16 \
  --num-norm-groups 4 --epochs 1000000 --warmup-epochs 1 --batch-size 16 --patience 0"
# (no `timeout`: it takes the signals itself; a watchdog kills a run that did not stop)
# The waits and limits below are for a native build; under qemu-user (tests/run_cross.sh sets
# SATDIFUSER_TEST_TIME_SCALE) a step takes 10-50x longer, so every wait and limit is multiplied by it.
SCALE=${SATDIFUSER_TEST_TIME_SCALE:-1}
watchdog() { ( sleep $((120 * SCALE)); kill -KILL $1 2>/dev/null ) > /dev/null 2>&1 & WD=$!; }
wait_for() {  # $1 = file, $2 = pattern; up to 30 s (times SCALE)
  k=0; while [ $k -lt $((300 * SCALE)) ] && ! grep -q "$2" "$1" 2>/dev/null; do sleep 0.1; k=$((k + 1)); done
}
$S $LONG --out "$T/sig1" > "$T/sig1.log" 2>&1 &
pid=$!; watchdog $pid
wait_for "$T/sig1/log.jsonl" '"event": "step"'
kill -INT $pid
t0=$(date +%s)
wait $pid; rc=$?; kill $WD 2>/dev/null
t1=$(date +%s)
check '[ $rc -eq 130 ] && [ $((t1 - t0)) -le $((5 * SCALE)) ] && grep -q "stopping after this step, checkpoint kept" "$T/sig1.log" && grep -q "stopped at global step" "$T/sig1.log"' \
  "SIGINT: exit $rc (130 expected) in $((t1 - t0)) s, $(tail -n 2 "$T/sig1.log" | tr '\n' ' ')"
check '[ -f "$T/sig1/checkpoint.safetensors" ] && [ -z "$(ls "$T/sig1" | grep tmp)" ]' "SIGINT: checkpoint saved, no temporary file"
check 'grep -q "^train: .* train, .* val" "$T/sig1.log" && grep -q "^val before training: metric" "$T/sig1.log" && grep -q "^epoch 1/1000000  step 1/4" "$T/sig1.log"' \
  "plain progress lines from the start: $(head -n 4 "$T/sig1.log" | tr '\n' '|')"
check '! grep -q "$(printf "\r")" "$T/sig1.log"' "no carriage return in a log file"
check 'grep -q "ETA" "$T/sig1.log"' "progress shows an ETA"
# resume it for 3 more steps: the kept checkpoint is whole
steps=$(grep -c '"event": "step"' "$T/sig1/log.jsonl")
$S $LONG --out "$T/sig1" --resume --max-steps $((steps + 3)) --quiet > "$T/sig1r.log" 2>&1
check '[ $? -eq 0 ] && [ $(grep -c "\"event\": \"step\"" "$T/sig1/log.jsonl") -eq $((steps + 3)) ]' "resume after SIGINT ($(tail -n 1 "$T/sig1r.log"))"

# two SIGINTs: the second stops at once (exit 130) and the last checkpoint (written after each epoch) is
# whole. A wide UPerNet (256 channels: steps of ~0.3 s, a 60 MB checkpoint) so that the second signal,
# sent when the first is acknowledged, comes while the step or the checkpoint write is still going on.
SLOW="train --features $D/features --labels $T/s3.csv --task seg --fuser gw --corrected --projection-dim 64 \
  --num-norm-groups 4 --channels 256 --epochs 1000000 --warmup-epochs 1 --batch-size 32 --patience 0"
$S $SLOW --out "$T/sig2" > "$T/sig2.log" 2>&1 &
pid=$!; watchdog $pid
wait_for "$T/sig2/log.jsonl" '"epoch": 2,'
kill -INT $pid  # the second once the first is acknowledged (two signals sent at once would be one)
k=0; while [ $k -lt $((500 * SCALE)) ] && ! grep -q "stopping after this step" "$T/sig2.log"; do sleep 0.01; k=$((k + 1)); done
kill -INT $pid
wait $pid; rc=$?; kill $WD 2>/dev/null
check '[ $rc -eq 130 ] && grep -q "stopped at once" "$T/sig2.log"' "second SIGINT: exit $rc, $(tail -n 2 "$T/sig2.log" | tr '\n' ' ')"
check '[ -z "$(ls "$T/sig2" | grep tmp)" ] && $BIN info "$T/sig2/checkpoint.safetensors" > /dev/null 2>&1' "second SIGINT: checkpoint whole, no temporary file"
$S $SLOW --out "$T/sig2" --resume --max-steps 1 --quiet > "$T/sig2r.log" 2>&1
check '[ $? -eq 0 ]' "second SIGINT: the run resumes ($(tail -n 1 "$T/sig2r.log"))"
rm -rf "$T/sig2"
# the same, deterministic: SIGINT and SIGTERM both pending when the stopped process continues
$S $LONG --out "$T/sig3" > "$T/sig3.log" 2>&1 &
pid=$!; watchdog $pid
wait_for "$T/sig3/log.jsonl" '"epoch": 2,'
kill -STOP $pid; kill -INT $pid; kill -TERM $pid; kill -CONT $pid
wait $pid; rc=$?; kill $WD 2>/dev/null
check '{ [ $rc -eq 130 ] || [ $rc -eq 143 ]; } && grep -q "stopped at once" "$T/sig3.log" && $BIN info "$T/sig3/checkpoint.safetensors" > /dev/null 2>&1 && [ -z "$(ls "$T/sig3" | grep tmp)" ]' \
  "SIGINT + SIGTERM: exit $rc, $(tail -n 2 "$T/sig3.log" | tr '\n' ' ')"

# --- finding 8: unwritable output locations, found before any computing ---
MODEL="$(pwd)/tests/data/tiny_pipeline"
IMG="$(pwd)/tests/data/demo/images/s2_r0_c0.npy"
mkdir -p "$T/ro"; chmod 555 "$T/ro"
unwritable="/sys"
if touch "$T/ro/probe" 2>/dev/null; then
  echo "SKIP cli_runs: a read-only --out is writable for this user (root): only $unwritable is checked"
  rm -f "$T/ro/probe"
else
  unwritable="$T/ro $unwritable"
fi
for dir in $unwritable; do
  $S train --features "$D/features" --labels "$T/c3.csv" --task cls $HEAD --epochs 2 --warmup-epochs 1 --out "$dir/run" > "$T/w1.log" 2>&1
  rc=$?
  check '[ $rc -eq 1 ] && grep -q "^satdifuser train: --out $dir/run: cannot create it in $dir" "$T/w1.log" && ! grep -q "checking" "$T/w1.log"' \
    "train --out $dir/run: exit $rc, $(tail -n 1 "$T/w1.log")"
  $S extract --model "$MODEL" --input "$IMG" --out "$dir/feat" --size 32 --bands 3,2,1 > "$T/w2.log" 2>&1
  rc=$?
  check '[ $rc -eq 2 ] && grep -q "^satdifuser extract: --out $dir/feat: cannot create it in $dir" "$T/w2.log" && ! grep -q "^extract: " "$T/w2.log"' \
    "extract --out $dir/feat: exit $rc, $(tail -n 1 "$T/w2.log")"
  $S eval --run "$T/cls" --features "$D/features" --labels "$T/c3.csv" --json "$dir/m.json" > "$T/w3.log" 2>&1
  rc=$?
  check '[ $rc -eq 1 ] && grep -q "json $dir/m.json: cannot create it in $dir" "$T/w3.log" && ! grep -q "accuracy" "$T/w3.log"' \
    "eval --json $dir/m.json: exit $rc, $(tail -n 1 "$T/w3.log")"
  $S predict --model "$MODEL" --head "$T/cls" --input "$IMG" --out "$dir/p.json" > "$T/w4.log" 2>&1
  rc=$?
  check '[ $rc -eq 2 ] && grep -q "out $dir/p.json: cannot create it in $dir" "$T/w4.log"' "predict --out $dir/p.json: exit $rc, $(tail -n 1 "$T/w4.log")"
done
chmod 755 "$T/ro"
$S train --features "$D/features" --labels "$T/c3.csv" --task cls $HEAD --epochs 1 --warmup-epochs 0 --out "$T/a/b/run" > "$T/w5.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/a/b/run/best.safetensors" ] && [ -z "$(ls -A "$T/a/b/run" | grep probe)" ]' "train --out in new folders, no probe file left ($(tail -n 1 "$T/w5.log"))"

echo "RESULT $pass $fail"
