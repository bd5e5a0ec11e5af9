#!/bin/sh
# The library face (src/satdifuser.h, docs/library.md): examples/embed, which includes only the public
# header and links libsatdifuser.a, against the CLI on the same image. Its feature file (sdf_features_save)
# holds the same tensor bytes as `satdifuser extract`'s, and its predictions are `satdifuser predict`'s
# (segmentation: the same share of each class; classification: the same best class and scores).
# Usage: sh tests/cli_embed.sh ./satdifuser (from the repository root; the examples in
# $SATDIFUSER_EXAMPLES, default build/examples); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
EMBED="${SATDIFUSER_EXAMPLES:-build/examples}/embed"
if [ ! -x "$EMBED" ]; then echo "SKIP cli_embed: $EMBED not built (make)"; echo "RESULT 0 0"; exit 0; fi
MODEL="$ROOT/tests/data/tiny_pipeline"
DEMO="$ROOT/tests/data/demo"
T=$(mktemp -d /tmp/satdifuser_cli_embed.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_embed: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"
X="--size 32 --bands 3,2,1 --scale clip"

mkdir -p "$T/img"
for i in s2_r0_c0 s2_r0_c1 s2_r0_c2 s2_r1_c0 s3_r0_c0 s3_r0_c1; do cp "$DEMO/images/$i.npy" "$T/img/"; done
IMG="$DEMO/images/s4_r0_c0.npy"
$S extract --model "$MODEL" --input "$T/img" --out "$T/feat" $X --quiet > "$T/x.log" 2>&1
check '[ $? -eq 0 ]' "extract ($(tail -n 1 "$T/x.log"))"
HEAD="--fuser gw --corrected --projection-dim 16 --num-norm-groups 4 --channels 16 --epochs 1 --warmup-epochs 0 --batch-size 2 --quiet"
printf '# classes: water,forest\nimage,split,label\ns2_r0_c0,train,0\ns2_r0_c1,train,1\ns2_r0_c2,train,0\ns2_r1_c0,train,1\ns3_r0_c0,val,0\ns3_r0_c1,val,1\n' > "$T/cls.csv"
$S train --features "$T/feat" --labels "$T/cls.csv" --task cls $HEAD --out "$T/cls" > "$T/t1.log" 2>&1
check '[ $? -eq 0 ]' "cls run ($(tail -n 1 "$T/t1.log"))"
{ echo "# classes: forest,grassland,shrubland,other"; for i in s2_r0_c0 s2_r0_c1 s2_r0_c2 s2_r1_c0; do echo "$i,train,$DEMO/masks/$i.png"; done
  for i in s3_r0_c0 s3_r0_c1; do echo "$i,val,$DEMO/masks/$i.png"; done; } > "$T/seg.csv"
$S train --features "$T/feat" --labels "$T/seg.csv" --task seg $HEAD --fuser moe --out "$T/seg" > "$T/t2.log" 2>&1
check '[ $? -eq 0 ]' "seg run ($(tail -n 1 "$T/t2.log"))"

# segmentation (an MoE head): the example's class shares = predict's, and its features = extract's
$S extract --model "$MODEL" --input "$IMG" --out "$T/one" $X --quiet > /dev/null 2>&1
"$EMBED" "$MODEL" "$T/seg" "$IMG" "$T/embed.safetensors" > "$T/e.log" 2> "$T/e.err"
check '[ $? -eq 0 ] && grep -q "of the pixels" "$T/e.log"' "embed, seg head ($(cat "$T/e.err"))"
$S predict --model "$MODEL" --head "$T/seg" --input "$IMG" --out "$T/p.png" > "$T/p.log" 2>&1
grep "^  class" "$T/p.log" | sed 's/^  //' > "$T/p.classes"
check '[ -s "$T/p.classes" ] && cmp -s "$T/p.classes" "$T/e.log"' "class shares: embed $(cat "$T/e.log" | tr '\n' ' ') vs predict $(cat "$T/p.classes" | tr '\n' ' ')"
# the tensors are the files' tail (feat.<i>.<s> and latent in one order, f32): same bytes
n=$(( $(wc -c < "$T/embed.safetensors") ))
m=$(( $(wc -c < "$T/one/s4_r0_c0.safetensors") ))
hdr=$(od -An -tu8 -N8 "$T/one/s4_r0_c0.safetensors" | tr -d ' ')
data=$((m - 8 - hdr))
check '[ $data -gt 1000 ] && [ $n -gt $data ] && tail -c $data "$T/embed.safetensors" | cmp -s -i 0:$((m - data)) - "$T/one/s4_r0_c0.safetensors"' \
  "embed's feature tensors differ from extract's ($data bytes)"
# the saved file is one `predict --features` reads: the same map as from the image
$S predict --head "$T/seg" --features "$T/embed.safetensors" --out "$T/f.png" > /dev/null 2>&1
check 'cmp -s "$T/f.png" "$T/p.png"' "predict --features on embed's file = predict on the image"

# classification: the same best class and scores (JSON scores %.6g, the example's %.4f)
"$EMBED" "$MODEL" "$T/cls" "$IMG" > "$T/c.log" 2> "$T/c.err"
check '[ $? -eq 0 ]' "embed, cls head ($(cat "$T/c.err"))"
$S predict --model "$MODEL" --head "$T/cls" --input "$IMG" --out "$T/p.json" > /dev/null 2>&1
best=$(sed 's/.*"class": \([0-9]*\).*/\1/' "$T/p.json")
check 'grep -q "^class $best [a-z]*: [0-9.]* (best)" "$T/c.log"' "best class $best of predict ($(cat "$T/p.json")) vs embed $(cat "$T/c.log" | tr '\n' ' ')"
scores=$(sed 's/.*"scores": \[\([^]]*\)\].*/\1/' "$T/p.json" | tr ',' '\n' | awk '{printf "%.4f\n", $1}')
mine=$(sed 's/^class [0-9]* [a-z]*: \([0-9.]*\).*/\1/' "$T/c.log")
check '[ -n "$mine" ] && [ "$scores" = "$mine" ]' "scores: predict $scores vs embed $mine"

echo "RESULT $pass $fail"
