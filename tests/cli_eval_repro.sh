#!/bin/sh
# CLI test: `eval` of a run folder reproduces `train`'s own final test exactly (the metrics
# JSON byte for byte) for every fuser, including an MoE head whose call counter crosses its
# warm-up during training: eval continues the counters from RUN/moe_counter.json, as run.py's
# final test continues the live ones. `--moe-counter restart` (counters at 0: dense) must give
# other metrics, so the check can fail. Also predict on the MoE run's head.
# Usage: sh tests/cli_eval_repro.sh ./satdifuser (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
MODEL="$ROOT/tests/data/tiny_pipeline"
LABELS="$ROOT/tests/data/demo/labels.csv"
T=$(mktemp -d /tmp/satdifuser_cli_eval.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_eval_repro: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 2"

$S extract --model "$MODEL" --input "$ROOT/tests/data/demo/images" --out "$T/feat" --size 64 --bands 3,2,1 \
  --scale clip --quiet > "$T/extract.log" 2>&1
check '[ $? -eq 0 ]' "extract the demo features"

# 3 epochs of 3 steps, validation every 2 steps; MoE: 3 calls per scale per forward, warm-up
# 30 calls, so the counter passes it during training (before-training val + test: 4 forwards).
TRAIN="train --features $T/feat --labels $LABELS --task seg --epochs 3 --warmup-epochs 1 --batch-size 6 \
  --eval-every 2 --patience 0 --projection-dim 16 --num-norm-groups 4 --channels 16 --quiet"
for fuser in gw lw moe concat single; do
  extra=""
  [ "$fuser" = moe ] && extra="--warmup-steps 30"
  $S $TRAIN --fuser $fuser $extra --out "$T/$fuser" > "$T/$fuser.log" 2>&1
  check '[ $? -eq 0 ] && [ -f "$T/$fuser/metrics.json" ]' "train --fuser $fuser ($(tail -n 2 "$T/$fuser.log"))"
  $S eval --run "$T/$fuser" --features "$T/feat" --labels "$LABELS" --split test --batch-size 32 \
    --json "$T/$fuser.eval.json" > "$T/$fuser.eval.log" 2>&1
  check '[ $? -eq 0 ] && cmp -s "$T/$fuser/metrics.json" "$T/$fuser.eval.json"' \
    "eval --fuser $fuser reproduces train's final test: $(cat "$T/$fuser.eval.json") vs $(cat "$T/$fuser/metrics.json")"
done

# the same for a classifier (linear head): labels 0..2 by row from the demo's image list
awk -F, 'BEGIN{print "# classes: a,b,c"; print "image,split,label"} /^s[0-9]/{print $1 "," $2 "," (n++ % 3)}' "$LABELS" > "$T/cls.csv"
for fuser in gw lw moe concat single; do
  extra=""
  [ "$fuser" = moe ] && extra="--warmup-steps 30"
  $S $TRAIN --task cls --labels "$T/cls.csv" --fuser $fuser $extra --head-json '{"fuser_projection_dim": 16}' --out "$T/cls_$fuser" > "$T/cls_$fuser.log" 2>&1
  $S eval --run "$T/cls_$fuser" --features "$T/feat" --labels "$T/cls.csv" --split test \
    --json "$T/cls_$fuser.eval.json" > "$T/cls_$fuser.eval.log" 2>&1
  check '[ $? -eq 0 ] && [ -f "$T/cls_$fuser/metrics.json" ] && cmp -s "$T/cls_$fuser/metrics.json" "$T/cls_$fuser.eval.json"' \
    "classifier, eval --fuser $fuser reproduces train's final test ($(tail -n 1 "$T/cls_$fuser.log"))"
done

# the MoE run records its counters; 'restart' is the other behaviour and changes the metrics
check 'grep -q "\"moe_global_step\": \[[0-9]*, [0-9]*, [0-9]*, [0-9]*\]" "$T/moe/moe_counter.json"' \
  "moe_counter.json holds one counter per scale ($(cat "$T/moe/moe_counter.json" 2>&1))"
check '[ ! -f "$T/gw/moe_counter.json" ]' "no moe_counter.json for a GW run"
c=$(sed 's/.*\[\([0-9]*\),.*/\1/' "$T/moe/moe_counter.json")
check '[ "$c" -gt 30 ]' "the MoE counter ($c) passed its warm-up (30) before the final test"
$S eval --run "$T/moe" --features "$T/feat" --labels "$LABELS" --split test --moe-counter restart \
  --json "$T/moe.restart.json" > "$T/moe.restart.log" 2>&1
check '[ $? -eq 0 ] && ! cmp -s "$T/moe/metrics.json" "$T/moe.restart.json"' \
  "eval --moe-counter restart (dense) differs from the continued counters"
$S eval --run "$T/moe" --features "$T/feat" --labels "$LABELS" --moe-counter sometimes > "$T/bad.log" 2>&1
check '[ $? -eq 2 ] && grep -q "continue or restart" "$T/bad.log"' "bad --moe-counter value is a usage error"
printf '{"moe_global_step": [1, 2]}\n' > "$T/moe/moe_counter.json"
$S eval --run "$T/moe" --features "$T/feat" --labels "$LABELS" > "$T/bad2.log" 2>&1
check '[ $? -eq 1 ] && grep -q "moe_counter.json" "$T/bad2.log"' "malformed moe_counter.json is named"
echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
