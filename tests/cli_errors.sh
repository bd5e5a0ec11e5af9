#!/bin/sh
# Bad input to the CLI: each case must fail with the right exit status (2 usage/model error, 1 run
# error) and a message naming the culprit, and leave no half-written run folder. Regression checks of
# the QA pass (options out of range, --corrected, --head-json typos, configs that give NaN features,
# NaN weights, a segmentation run evaluated with class labels).
# Usage: sh tests/cli_errors.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
MODEL="$ROOT/tests/data/tiny_pipeline"
DEMO="$ROOT/tests/data/demo"
T=$(mktemp -d /tmp/satdifuser_cli_errors.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_errors: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"
# data offset of a safetensors file: 8 + its header length
data_offset() { echo $((8 + $(od -A n -t u8 -N 8 "$1" | tr -d ' '))); }

# four demo chips: 2 train, 1 val, 1 test
mkdir -p "$T/img"
for i in s2_r0_c0 s2_r0_c1 s3_r0_c0 s4_r0_c0; do cp "$DEMO/images/$i.npy" "$T/img/"; done
$S extract --model "$MODEL" --input "$T/img" --out "$T/feat" --size 32 --bands 3,2,1 --scale clip --quiet > "$T/x.log" 2>&1
check '[ $? -eq 0 ]' "extract 4 chips ($(tail -n 2 "$T/x.log"))"
L="$T/seg.csv"
printf '# classes: forest,grassland,shrubland,other\nimage,split,label\n' > "$L"
printf 's2_r0_c0,train,%s\ns2_r0_c1,train,%s\ns3_r0_c0,val,%s\ns4_r0_c0,test,%s\n' "$DEMO/masks/s2_r0_c0.png" \
  "$DEMO/masks/s2_r0_c1.png" "$DEMO/masks/s3_r0_c0.png" "$DEMO/masks/s4_r0_c0.png" >> "$L"
TRAIN="train --features $T/feat --labels $L --task seg --epochs 2 --warmup-epochs 1 --batch-size 2 --patience 0 \
  --num-norm-groups 4 --channels 16 --quiet"

# options: whole numbers, finite values, nothing negative, warmup < epochs, no option twice (exit 2, no run folder)
n=0
for opt in "--batch-size 2.5" "--batch-size 1e12" "--lr nan" "--lr inf" "--min-lr -1" "--weight-decay nan" \
           "--seed -1" "--patience -1" "--max-steps -1" "--num-classes -3" "--warmup-epochs 2" "--channels 0x10" \
           "--projection-dim 16 --projection-dim 32"; do
  n=$((n + 1))
  $S $TRAIN --projection-dim 16 $opt --out "$T/o$n" > "$T/o$n.log" 2>&1
  rc=$?
  check '[ $rc -eq 2 ] && [ ! -e "$T/o$n" ]' "train $opt: exit $rc, expected 2 and no run folder ($(tail -n 1 "$T/o$n.log"))"
done
$S $TRAIN --out "$T/twice" --projection-dim 16 --projection-dim 32 > "$T/twice.log" 2>&1
check '[ $? -eq 2 ] && grep -q "projection-dim given twice" "$T/twice.log"' "an option given twice is named"

# --corrected (it used to write an int where the config wants a bool) and a huge --batch-size (clamped)
$S $TRAIN --projection-dim 16 --fuser lw --corrected --out "$T/corr" > "$T/corr.log" 2>&1
check '[ $? -eq 0 ] && grep -q "\"lw_advance_channels\": true" "$T/corr/head_config.json"' "train --corrected ($(tail -n 1 "$T/corr.log"))"
$S $TRAIN --projection-dim 16 --batch-size 1000000 --out "$T/huge" > "$T/huge.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/huge/best.safetensors" ]' "train --batch-size 1000000 ($(tail -n 1 "$T/huge.log"))"

# --head-json: unknown keys, keys train sets itself, text that is not a JSON object
$S $TRAIN --head-json '{"projection_dimm": 16}' --out "$T/h1" > "$T/h1.log" 2>&1
check '[ $? -eq 1 ] && grep -q "unknown head config key .projection_dimm." "$T/h1.log" && [ ! -e "$T/h1" ]' "--head-json typo named"
$S $TRAIN --projection-dim 16 --head-json '{"fuser": "moe"}' --out "$T/h2" > "$T/h2.log" 2>&1
check '[ $? -eq 1 ] && grep -q "key .fuser. is set by train" "$T/h2.log"' "--head-json reserved key named"
$S $TRAIN --projection-dim 16 --head-json 'garbage}' --out "$T/h3" > "$T/h3.log" 2>&1
check '[ $? -eq 1 ] && grep -q -- "--head-json" "$T/h3.log" && [ ! -e "$T/h3" ]' "--head-json garbage refused"

# a mask with a class >= num_classes: error naming the mask (and no leak under ASan: exit 1, not 23)
sed 's/^# classes:.*/# classes: a,b/' "$L" > "$T/two.csv"
$S $TRAIN --projection-dim 16 --labels "$T/two.csv" --out "$T/m1" > "$T/m1.log" 2>&1
check '[ $? -eq 1 ] && grep -q "outside 0..1" "$T/m1.log"' "mask class out of range ($(tail -n 1 "$T/m1.log"))"

# eval of the segmentation run with class labels: the labels file and the image are named
printf 'image,split,label\ns2_r0_c0,train,0\ns2_r0_c1,test,1\ns3_r0_c0,val,1\n' > "$T/cls.csv"
$S eval --run "$T/corr" --features "$T/feat" --labels "$T/cls.csv" --split test > "$T/e1.log" 2>&1
check '[ $? -eq 1 ] && grep -q "cls.csv: image .s2_r0_c0.: segmentation mask" "$T/e1.log"' "eval, wrong task ($(tail -n 1 "$T/e1.log"))"

# NaN in the head weights: eval names the tensor
cp -r "$T/corr" "$T/nanhead"
printf '\377\377\377\377' | dd of="$T/nanhead/best.safetensors" bs=1 seek=$(data_offset "$T/nanhead/best.safetensors") conv=notrunc 2>/dev/null
$S eval --run "$T/nanhead" --features "$T/feat" --labels "$L" --split test > "$T/e2.log" 2>&1
check '[ $? -eq 1 ] && grep -q "NaN/Inf" "$T/e2.log"' "eval, NaN head weight ($(tail -n 1 "$T/e2.log"))"

# model configs and weights that used to give NaN features (or huge maps) silently: exit 2, the key named
one="$T/img/s2_r0_c0.npy"
attack_config() {  # file, sed expression, expected text
  rm -rf "$T/m"; cp -r "$MODEL" "$T/m"
  sed "$2" "$MODEL/$1" > "$T/m/$1"
  $S extract --model "$T/m" --input "$one" --out "$T/mf" --size 32 --bands 3,2,1 --quiet > "$T/mc.log" 2>&1
  rc=$? want=$3  # (check's eval sees its own $3, not this function's)
  check '[ $rc -eq 2 ] && grep -q "$want" "$T/mc.log" && [ -z "$(ls "$T/mf" 2>/dev/null | grep s2_)" ]' "extract, $1 $2: exit $rc ($(tail -n 1 "$T/mc.log"))"
}
attack_config unet/config.json 's/"norm_eps": 1e-05/"norm_eps": -1/' "norm_eps"
attack_config unet/config.json 's/"downsample_padding": 1/"downsample_padding": 1000/' "downsample_padding"
attack_config unet/config.json 's/"mid_block_scale_factor": 1/"mid_block_scale_factor": 0/' "mid_block_scale_factor"
attack_config vae/config.json 's/"scaling_factor": 0.18215/"scaling_factor": 1e300/' "scaling_factor"
# absurd sizes: refused with config.json, the key and the value named (not a shape mismatch or out of memory)
attack_config unet/config.json 's/^    8,$/    100000,/' "unet: UNet: config.json .block_out_channels.\[0\] is 100000"
attack_config unet/config.json 's/"norm_num_groups": 8/"norm_num_groups": 0/' "config.json .norm_num_groups. is 0"
attack_config unet/config.json 's/"cross_attention_dim": 32/"cross_attention_dim": -32/' "config.json .cross_attention_dim. is -32"
attack_config vae/config.json 's/"latent_channels": 4/"latent_channels": 1073741824/' "config.json .latent_channels. is 1073741824"
attack_config text_encoder/config.json 's/"hidden_size": 32/"hidden_size": 1000000000/' "text_encoder/config.json: .*.hidden_size. is 1000000000"
rm -rf "$T/m"; cp -r "$MODEL" "$T/m"
w="$T/m/unet/diffusion_pytorch_model.safetensors"
printf '\000\176' | dd of="$w" bs=1 seek=$(data_offset "$w") conv=notrunc 2>/dev/null  # an f16 NaN
$S extract --model "$T/m" --input "$one" --out "$T/mf" --size 32 --bands 3,2,1 --quiet > "$T/mw.log" 2>&1
check '[ $? -eq 2 ] && grep -q "NaN/Inf" "$T/mw.log"' "extract, NaN UNet weight ($(tail -n 1 "$T/mw.log"))"

echo "RESULT $pass $fail"
