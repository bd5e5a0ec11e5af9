#!/bin/sh
# Issue 18, finding 3: class-per-folder datasets (EuroSAT-style DIR/Forest/Forest_1.tif).
# `satdifuser labels from-folders` writes a stratified, seeded labels CSV whose ids are the paths
# under DIR ("Forest/Forest_1"), which are the feature cache's relative paths: extract -> labels ->
# train on class folders of demo chips, and the counts per class and split checked against the
# fractions (computed here, not read from the tool).
# Usage: sh tests/cli_labels.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
MODEL="$ROOT/tests/data/tiny_pipeline"
T=$(mktemp -d /tmp/satdifuser_cli_labels.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_labels: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"

# a synthetic tree (names only are read): 3 classes of 10, 20 and 5 files, one nested, one file at the top
mkdir -p "$T/tree/Forest" "$T/tree/River" "$T/tree/AnnualCrop/sub"
for i in $(seq 1 10); do : > "$T/tree/Forest/Forest_$i.tif"; done
for i in $(seq 1 20); do : > "$T/tree/River/River_$i.png"; done
for i in $(seq 1 5); do : > "$T/tree/AnnualCrop/sub/A_$i.npy"; done
: > "$T/tree/readme.tif"; : > "$T/tree/Forest/notes.txt"; : > "$T/tree/Forest/.hidden.tif"
$S labels from-folders "$T/tree" --out "$T/t1.csv" --split 0.6,0.2,0.2 --seed 7 > "$T/t1.log" 2>&1
check '[ $? -eq 0 ] && grep -q "3 classes, 35 images" "$T/t1.log" && grep -q "1 file directly" "$T/t1.log"' "from-folders ($(cat "$T/t1.log"))"
check 'grep -q "^# classes: AnnualCrop,Forest,River$" "$T/t1.csv" && grep -q "^image,split,label$" "$T/t1.csv"' "classes in sorted order"
check 'grep -q "^AnnualCrop/sub/A_3,[a-z]*,0$" "$T/t1.csv" && grep -q "^Forest/Forest_10,[a-z]*,1$" "$T/t1.csv" && grep -q "^River/River_20,[a-z]*,2$" "$T/t1.csv"' "ids are paths without extension, labels the class index"
check '! grep -q "notes\|hidden\|readme" "$T/t1.csv"' "other files, hidden files and top-level files are not listed"
# stratified: per class round(n * 0.6) train, round(n * 0.8) - round(n * 0.6) val, the rest test
for spec in "0 5 3 1 1" "1 10 6 2 2" "2 20 12 4 4"; do
  cls=${spec%% *}; want=${spec#* }; files=${want%% *}; want=${want#* }  # (check's eval has its own $1..)
  got=$(awk -F, -v c=$cls '$3 == c { n[$2]++ } END { printf "%d %d %d", n["train"], n["val"], n["test"] }' "$T/t1.csv")
  check '[ "$got" = "$want" ]' "class $cls ($files files): train/val/test $got, expected $want"
done
$S labels from-folders "$T/tree" --out "$T/t1.csv" --seed 7 > "$T/t2.log" 2>&1
check '[ $? -eq 2 ] && grep -q -- "--force" "$T/t2.log"' "an existing --out is kept without --force"
$S labels from-folders "$T/tree" --out "$T/t2.csv" --split 0.6,0.2,0.2 --seed 7 > /dev/null 2>&1
check '[ "$(grep -v "^#" "$T/t1.csv")" = "$(grep -v "^#" "$T/t2.csv")" ]' "same seed, same file"
$S labels from-folders "$T/tree" --out "$T/t3.csv" --split 0.6,0.2,0.2 --seed 8 > /dev/null 2>&1
check '[ "$(grep -v "^#" "$T/t1.csv")" != "$(grep -v "^#" "$T/t3.csv")" ]' "another seed, another split"
$S labels from-folders "$T/tree" --out "$T/t4.csv" --split 0.6,0.2,0.3 > "$T/t4.log" 2>&1
check '[ $? -ne 0 ] && grep -q "sum to" "$T/t4.log" && [ ! -e "$T/t4.csv" ]' "fractions not summing to 1 ($(cat "$T/t4.log"))"
: > "$T/tree/River/a,b.png"
$S labels from-folders "$T/tree" --out "$T/t5.csv" > "$T/t5.log" 2>&1
check '[ $? -eq 1 ] && grep -q "a,b.png" "$T/t5.log" && [ ! -e "$T/t5.csv" ]' "a ',' in a name is refused ($(cat "$T/t5.log"))"
rm "$T/tree/River/a,b.png"; : > "$T/tree/River/River_1.npy"
$S labels from-folders "$T/tree" --out "$T/t6.csv" > "$T/t6.log" 2>&1
check '[ $? -eq 1 ] && grep -q "same id .River/River_1." "$T/t6.log"' "two files of one id refused ($(cat "$T/t6.log"))"
$S labels from-folders "$T/nothing" --out "$T/t7.csv" > "$T/t7.log" 2>&1
check '[ $? -eq 1 ] && grep -q "nothing" "$T/t7.log"' "missing folder named"

# the workflow: demo chips in 3 class folders -> extract -> labels -> train (ids with '/')
n=0
for f in "$ROOT"/tests/data/demo/images/s2_*.npy "$ROOT"/tests/data/demo/images/s3_r0_*.npy; do
  c=$(( n % 3 )); case $c in 0) d=Forest ;; 1) d=River ;; 2) d=Pasture ;; esac
  mkdir -p "$T/img/$d"; cp "$f" "$T/img/$d/"; n=$((n + 1))
  [ $n -ge 12 ] && break
done
$S extract --model "$MODEL" --input "$T/img" --out "$T/feat" --size 32 --bands 3,2,1 --scale clip --quiet > "$T/x.log" 2>&1
check '[ $? -eq 0 ] && [ $(ls "$T/feat/Forest" | wc -l) -eq 4 ]' "extract class folders ($(tail -n 1 "$T/x.log"))"
$S labels from-folders "$T/img" --out "$T/img.csv" --split 0.5,0.25,0.25 > "$T/l1.log" 2>&1
check '[ $? -eq 0 ] && grep -q "train 6, val 3, test 3" "$T/l1.log"' "labels of the image folders ($(cat "$T/l1.log"))"
$S labels from-folders "$T/feat" --out "$T/feat.csv" --split 0.5,0.25,0.25 > "$T/l2.log" 2>&1
check '[ $? -eq 0 ] && [ "$(grep -v "^#" "$T/img.csv")" = "$(grep -v "^#" "$T/feat.csv")" ]' "the feature folder gives the same labels ($(cat "$T/l2.log"))"
$S train --features "$T/feat" --labels "$T/img.csv" --task cls --fuser gw --corrected --projection-dim 16 \
  --num-norm-groups 4 --epochs 2 --warmup-epochs 1 --batch-size 4 --quiet --out "$T/run" > "$T/tr.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/run/metrics.json" ]' "train on class folders ($(tail -n 2 "$T/tr.log" | tr '\n' ' '))"
$S eval --run "$T/run" --features "$T/feat" --labels "$T/img.csv" --split val > "$T/ev.log" 2>&1
check '[ $? -eq 0 ] && grep -q "accuracy" "$T/ev.log"' "eval on class folders"
$S labels --help > "$T/h.log" 2>&1
check '[ $? -eq 0 ] && grep -q "from-folders" "$T/h.log"' "labels --help"

echo "RESULT $pass $fail"
