#!/bin/sh
# Issue 7 "learning check": `satdifuser train` on the synthetic separable feature set of
# tests/data/learning_check (made by weights_tools/make_learning_check.py) reaches the test
# accuracy the original PyTorch GWFuserClassifier reaches with the same setup (reference.json):
# every C seed >= PyTorch's min over seeds - MARGIN, the C mean >= PyTorch's mean - MARGIN;
# and a 2-thread run writes a byte-identical metrics.json.
# Usage: sh tests/cli_learning.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
D="$(pwd)/tests/data/learning_check"
MARGIN=0.10
T=$(mktemp -d /tmp/satdifuser_cli_learning.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_learning: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }

# Same setup as the PyTorch reference: corrected fuser size, projection_dim 16, 4 norm groups,
# 1 res block, Adam lr 0.01 constant (no warm-up, min lr = lr), batch 16, 30 epochs, best val.
TRAIN="train --features $D/features --labels $D/labels.csv --task cls --fuser gw --corrected --projection-dim 16 \
  --num-norm-groups 4 --head-json {\"num_res_blocks\":1} --epochs 30 --warmup-epochs 0 --lr 0.01 --min-lr 0.01 \
  --batch-size 16 --patience 0 --quiet"
acc() { sed -n 's/.*"accuracy": \([0-9.eE+-]*\).*/\1/p' "$1"; }
ref_min=$(sed -n 's/.*"test_accuracy_min": \([0-9.eE+-]*\).*/\1/p' "$D/reference.json")
ref_mean=$(sed -n 's/.*"test_accuracy_mean": \([0-9.eE+-]*\).*/\1/p' "$D/reference.json")
check '[ -n "$ref_min" ] && [ -n "$ref_mean" ]' "reference.json has test_accuracy_min / _mean"

sum=0
for s in 0 1 2; do
  "$BIN" --threads 1 $TRAIN --seed $s --out "$T/s$s" > "$T/s$s.log" 2>&1
  check '[ $? -eq 0 ] && [ -f "$T/s$s/metrics.json" ]' "train seed $s ($(tail -n 2 "$T/s$s.log"))"
  a=$(acc "$T/s$s/metrics.json"); a=${a:-0}
  echo "cli_learning: seed $s test accuracy $a (PyTorch min $ref_min, mean $ref_mean, margin $MARGIN)"
  check 'awk "BEGIN{exit !($a >= $ref_min - $MARGIN)}"' "seed $s accuracy $a < PyTorch min $ref_min - $MARGIN"
  sum=$(awk "BEGIN{print $sum + $a}")
done
mean=$(awk "BEGIN{print $sum / 3}")
check 'awk "BEGIN{exit !($mean >= $ref_mean - $MARGIN)}"' "C mean accuracy $mean < PyTorch mean $ref_mean - $MARGIN"

"$BIN" --threads 2 $TRAIN --seed 0 --out "$T/t2" > "$T/t2.log" 2>&1
check '[ $? -eq 0 ] && cmp -s "$T/s0/metrics.json" "$T/t2/metrics.json"' "2-thread metrics.json differs from 1-thread"

echo "RESULT $pass $fail"
