#!/bin/sh
# Issue 18, finding 6 (part): predict = extract. --out by its extension (.png for a segmentation map,
# .json for a class; anything else refused before the image is computed), the class names in the
# output, and --bands / --scale / --precision taken by extract's own parser: a prediction with them
# equals the head run on a feature file `extract` made with the same options.
# Usage: sh tests/cli_predict.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
MODEL="$ROOT/tests/data/tiny_pipeline"
DEMO="$ROOT/tests/data/demo"
T=$(mktemp -d /tmp/satdifuser_cli_predict.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_predict: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"
X="--size 32 --bands 3,2,1 --scale clip"

mkdir -p "$T/img"
for i in s2_r0_c0 s2_r0_c1 s2_r0_c2 s2_r1_c0 s3_r0_c0 s3_r0_c1; do cp "$DEMO/images/$i.npy" "$T/img/"; done
IMG="$T/img/s4_r0_c0.npy"; cp "$DEMO/images/s4_r0_c0.npy" "$IMG"
$S extract --model "$MODEL" --input "$T/img" --out "$T/feat" $X --quiet > "$T/x.log" 2>&1
check '[ $? -eq 0 ]' "extract ($(tail -n 1 "$T/x.log"))"
HEAD="--fuser gw --corrected --projection-dim 16 --num-norm-groups 4 --channels 16 --epochs 1 --warmup-epochs 0 --batch-size 2 --quiet"
# classification, two named classes
printf '# classes: water,forest\nimage,split,label\ns2_r0_c0,train,0\ns2_r0_c1,train,1\ns2_r0_c2,train,0\ns2_r1_c0,train,1\ns3_r0_c0,val,0\ns3_r0_c1,val,1\ns4_r0_c0,test,0\n' > "$T/cls.csv"
$S train --features "$T/feat" --labels "$T/cls.csv" --task cls $HEAD --out "$T/cls" > "$T/t1.log" 2>&1
check '[ $? -eq 0 ] && grep -q "\"water\", \"forest\"" "$T/cls/classes.json"' "cls run writes classes.json ($(tail -n 1 "$T/t1.log"))"
# segmentation, the demo's four named classes
{ echo "# classes: forest,grassland,shrubland,other"; for i in s2_r0_c0 s2_r0_c1 s2_r0_c2 s2_r1_c0; do echo "$i,train,$DEMO/masks/$i.png"; done
  for i in s3_r0_c0 s3_r0_c1; do echo "$i,val,$DEMO/masks/$i.png"; done; } > "$T/seg.csv"
$S train --features "$T/feat" --labels "$T/seg.csv" --task seg $HEAD --out "$T/seg" > "$T/t2.log" 2>&1
check '[ $? -eq 0 ]' "seg run ($(tail -n 1 "$T/t2.log"))"

# --out by extension: refused before anything is computed (exit 2, nothing written)
for case in "cls p.png NAME.json" "cls p.txt NAME.json" "seg p.json NAME.png" "seg p.txt NAME.png"; do
  run=${case%% *}; rest=${case#* }; out=${rest%% *}; want=${rest#* }
  $S predict --model "$MODEL" --head "$T/$run" --input "$IMG" --out "$T/$out" > "$T/o.log" 2>&1
  rc=$?
  check '[ $rc -eq 2 ] && grep -q "$want" "$T/o.log" && [ ! -e "$T/$out" ] && [ -z "$(ls "$T" | grep features.tmp)" ]' \
    "$run head, --out $out: exit $rc, $(tail -n 1 "$T/o.log")"
done

# class names in the output
$S predict --model "$MODEL" --head "$T/cls" --input "$IMG" --out "$T/p.json" > "$T/p.log" 2>&1
check '[ $? -eq 0 ] && grep -q "\"class_names\": \[\"water\", \"forest\"\]" "$T/p.json" && grep -q "\"class_name\": \"\(water\|forest\)\"" "$T/p.json"' \
  "cls prediction names the class ($(cat "$T/p.json"))"
check 'grep -q "^class [01] \(water\|forest\) (softmax" "$T/p.log"' "the printed class has its name ($(cat "$T/p.log"))"
$S predict --model "$MODEL" --head "$T/seg" --input "$IMG" --out "$T/p.png" > "$T/s.log" 2>&1
check '[ $? -eq 0 ] && grep -q "class [0-3] \(forest\|grassland\|shrubland\|other\): " "$T/s.log"' "seg prediction names the classes ($(cat "$T/s.log" | tr '\n' ' '))"

# --bands / --scale / --precision: extract's parser and preprocessing. The prediction with --bands 1,2,3
# equals the head on extract --bands 1,2,3's feature file, and differs from the run's 3,2,1
$S predict --model "$MODEL" --head "$T/cls" --input "$IMG" --out "$T/b.json" --bands 1,2,3 > "$T/b.log" 2>&1
check '[ $? -eq 0 ]' "predict --bands 1,2,3 ($(tail -n 1 "$T/b.log"))"
$S extract --model "$MODEL" --input "$IMG" --out "$T/feat123" --size 32 --bands 1,2,3 --scale clip --quiet > /dev/null 2>&1
$S predict --head "$T/cls" --features "$T/feat123/s4_r0_c0.safetensors" --out "$T/f.json" > /dev/null 2>&1
check 'cmp -s "$T/b.json" "$T/f.json"' "predict --bands 1,2,3 = the head on extract --bands 1,2,3 ($(cat "$T/b.json") vs $(cat "$T/f.json"))"
check '! cmp -s "$T/b.json" "$T/p.json"' "--bands 1,2,3 changes the prediction"
$S predict --model "$MODEL" --head "$T/cls" --input "$IMG" --out "$T/b2.json" --bands 3,2,1 --scale clip --precision f32 > /dev/null 2>&1
check 'cmp -s "$T/b2.json" "$T/p.json"' "the run's own options given again: the same prediction"
$S predict --model "$MODEL" --head "$T/cls" --input "$IMG" --out "$T/e.json" --scale bogus > "$T/e1.log" 2>&1
$S extract --model "$MODEL" --input "$IMG" --out "$T/fe" --scale bogus > "$T/e2.log" 2>&1
m=$(grep "scale 'bogus'" "$T/e2.log")
check '[ -n "$m" ] && grep -qF "$m" "$T/e1.log" && [ ! -e "$T/e.json" ]' "predict --scale bogus: extract's message ($(head -n 1 "$T/e1.log"))"
$S predict --model "$MODEL" --head "$T/cls" --input "$IMG" --out "$T/e.json" --bands 9,2,1 > "$T/e3.log" 2>&1
check '[ $? -eq 1 ] && grep -q "band 9" "$T/e3.log" && grep -q "4 bands" "$T/e3.log"' "predict --bands 9,2,1 on a 4-band image ($(head -n 1 "$T/e3.log"))"
$S predict --model "$MODEL" --head "$T/cls" --input "$IMG" --out "$T/e.json" --precision fp8 > "$T/e4.log" 2>&1
check '[ $? -ne 0 ] && grep -q "precision .fp8.: expected f32, bf16 or f16" "$T/e4.log"' "predict --precision fp8 ($(head -n 1 "$T/e4.log"))"

echo "RESULT $pass $fail"
