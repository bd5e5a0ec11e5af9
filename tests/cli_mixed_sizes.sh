#!/bin/sh
# Images of any size (issue 18, finding 2) on real rasters of ../shared/data (the pixels of
# --crop center and --resize exact against torch's are checked by test_preprocess); a class-folder
# dataset of 8 rasters of 6 sizes and aspect ratios: with the default --resize shorter (the
# original's Resize(N)) train refuses it naming files, shapes and the two options; with
# --crop center and with --resize exact it trains, and predict repeats the crop (the same class
# scores as the head on the file extract wrote).
# Usage: sh tests/cli_mixed_sizes.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
MODEL="$ROOT/tests/data/tiny_pipeline"
R="$ROOT/tests/data/resize_crop"
D=${SATDIFUSER_SHARED_DATA:-$ROOT/../shared/data}
[ -f "$D/MANIFEST.md" ] || D=/work/shared/data  # a clone elsewhere (e.g. /tmp) on this machine
pass=0; fail=0
if [ ! -f "$D/MANIFEST.md" ]; then echo "SKIP cli_mixed_sizes: no ../shared/data"; echo "RESULT 0 0"; exit 0; fi
T=$(mktemp -d /tmp/satdifuser_cli_mixed.XXXXXX)
trap 'rm -rf "$T"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_mixed_sizes: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"
X="$S extract --model $MODEL --size 64 --quiet"  # (at 32, a 374x499 image's odd latent widths collide)
payload() {
  n=$(od -An -tu1 -N4 "$1" | awk '{print $1 + 256 * $2 + 65536 * $3 + 16777216 * $4}')
  tail -c +$((8 + n + 1)) "$1"
}
same_tensors() { payload "$1" > "$T/p1"; payload "$2" > "$T/p2"; [ -s "$T/p1" ] && cmp -s "$T/p1" "$T/p2"; }

# 1. the crop is recorded and gives square features (the pixels against torch's: test_preprocess)
mkdir -p "$T/ref/oxford"; cp "$D/tiff/image-tiff/oxford.tif" "$T/ref/oxford/img.tif"
$X --input "$T/ref/oxford/img.tif" --out "$T/ref/oxford/oc" --scale 255 --crop center > /dev/null 2>&1
$X --input "$T/ref/oxford/img.tif" --out "$T/ref/oxford/os" --scale 255 > /dev/null 2>&1
check '! same_tensors "$T/ref/oxford/os/img.safetensors" "$T/ref/oxford/oc/img.safetensors"' "no crop is not the crop"
"$BIN" info "$T/ref/oxford/oc/img.safetensors" > "$T/info.txt" 2>&1
check 'grep -q "\"crop\": \"torchvision CenterCrop(size)\"" "$T/info.txt" && grep -q "feat.0.0 .*(1, [0-9]*, 8, 8)" "$T/info.txt"' \
  "the crop is recorded, features 8x8 ($(grep -i "crop\|feat.0.0" "$T/info.txt"))"
$X --input "$T/ref/oxford/img.tif" --out "$T/x" --crop middle > "$T/x.log" 2>&1
check '[ $? -eq 2 ] && grep -q -- "--crop .middle.: expected center" "$T/x.log"' "bad --crop ($(cat "$T/x.log"))"
$X --input "$T/ref/oxford/img.tif" --out "$T/x" --resize long > "$T/x.log" 2>&1
check '[ $? -eq 2 ] && grep -q -- "--resize .long.: expected shorter" "$T/x.log"' "bad --resize ($(cat "$T/x.log"))"

# 2. class folders of real 8-bit rasters of 6 sizes: 383x232, 374x499, 601x81, 791x718, 100x101, 32x32
mkdir -p "$T/ds/field" "$T/ds/town"
cp "$D/tiff/rio-tiler/colorado_CL_1.tif" "$T/ds/field/colorado.tif"
cp "$D/tiff/image-tiff/oxford.tif" "$T/ds/town/oxford.tif"
cp "$D/tiff/image-tiff/tiled-rgb-u8.tif" "$T/ds/town/tiled.tif"
cp "$D/tiff/rasterio/RGB.byte.tif" "$T/ds/field/landsat.tif"
cp "$D/satellite/eo-learn/scene2.rgb.png" "$T/ds/field/s2.png"
cp "$D/satellite/eo-learn/scene3.rgb.png" "$T/ds/field/s3.png"
cp "$D/png/pngsuite/basn2c08.png" "$T/ds/town/basn.png"
cp "$D/tiff/rasterio/rgb_lzw.tif" "$T/ds/town/landsat_lzw.tif"
$S labels from-folders "$T/ds" --out "$T/labels.csv" --split 0.5,0.25,0.25 > /dev/null 2>&1
check '[ $? -eq 0 ] && [ "$(grep -c ",train," "$T/labels.csv")" = 4 ]' "labels from-folders ($(cat "$T/labels.csv"))"
TR="train --labels $T/labels.csv --task cls --projection-dim 16 --num-norm-groups 4 --epochs 2 --batch-size 2 --quiet"
$X --input "$T/ds" --out "$T/f_short" > /dev/null 2>&1
$S $TR --features "$T/f_short" --out "$T/r_short" > "$T/short.log" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "feature files of different sizes" "$T/short.log" && grep -q "of 8 files differ" "$T/short.log" && grep -q -- "--crop center" "$T/short.log" && grep -q -- "--resize exact" "$T/short.log" && grep -q "(e.g. .town/oxford., image \[3, 81, 601\])" "$T/short.log" && [ ! -e "$T/r_short/head_config.json" ]' \
  "default resize: refused naming files, shapes and options: exit $rc, $(cat "$T/short.log")"
for mode in "--crop center" "--resize exact"; do
  tag=$(echo "$mode" | tr -d ' -')
  $X --input "$T/ds" --out "$T/f_$tag" $mode > "$T/x_$tag.log" 2>&1
  $S $TR --features "$T/f_$tag" --out "$T/r_$tag" > "$T/t_$tag.log" 2>&1
  check '[ $? -eq 0 ] && [ -f "$T/r_$tag/best.safetensors" ] && [ -f "$T/r_$tag/metrics.json" ]' \
    "$mode: mixed sizes train ($(cat "$T/x_$tag.log" "$T/t_$tag.log" | tail -5))"
done
# predict on the crop run: a new file of another size goes through the same crop (one parser)
cp "$D/tiff/rio-tiler/colorado_CL_1.tif" "$T/new.tif"
$S predict --model "$MODEL" --head "$T/r_cropcenter" --input "$T/new.tif" --out "$T/pred.json" > "$T/p.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/pred.json" ]' "predict on a 383x232 image with the crop run ($(cat "$T/p.log"))"
$S predict --head "$T/r_cropcenter" --features "$T/f_cropcenter/field/colorado.safetensors" --out "$T/pred_f.json" > /dev/null 2>&1
check 'cmp -s "$T/pred.json" "$T/pred_f.json"' "predict = the head on extract --crop center's file ($(cat "$T/pred.json"; cat "$T/pred_f.json"))"
$S predict --model "$MODEL" --head "$T/r_cropcenter" --input "$T/new.tif" --out "$T/pred_nc.json" --crop none > "$T/pnc.log" 2>&1
check '[ $? -ne 0 ] && grep -q "another aspect ratio than the training images" "$T/pnc.log"' "predict --crop none replaces the run's crop ($(cat "$T/pnc.log"))"

# 3. segmentation: NAIP chips (256x256, masks 256x256) with eo-learn scenes (100x101, LULC mask 100x101):
#    --resize exact gives one feature shape, but the masks keep two sizes: refused, named;
#    --crop center would cut the features, not the masks: refused for segmentation
C="$D/satellite/chesapeake"; E="$D/satellite/eo-learn"
mkdir -p "$T/seg"
cp "$C/id_000051.rgb.png" "$T/seg/a.png"; cp "$C/id_000051.label.png" "$T/seg/a_mask.png"
cp "$C/id_000138.rgb.png" "$T/seg/b.png"; cp "$C/id_000138.label.png" "$T/seg/b_mask.png"
cp "$E/scene2.rgb.png" "$T/seg/c.png"; cp "$E/LULC.png" "$T/seg/c_mask.png"
cp "$E/scene3.rgb.png" "$T/seg/d.png"; cp "$E/LULC.png" "$T/seg/d_mask.png"
printf 'image,split,label\na,train,seg/a_mask.png\nc,train,seg/c_mask.png\nb,val,seg/b_mask.png\nd,test,seg/d_mask.png\n' > "$T/seg.csv"
SEG="train --labels $T/seg.csv --task seg --num-classes 11 --projection-dim 16 --num-norm-groups 4 --channels 16 --epochs 1 --batch-size 2 --quiet"
mkdir -p "$T/segin"; for i in a b c d; do cp "$T/seg/$i.png" "$T/segin/"; done
$X --input "$T/segin" --out "$T/fseg_e" --resize exact > /dev/null 2>&1
$S $SEG --features "$T/fseg_e" --out "$T/rseg_e" > "$T/seg_e.log" 2>&1
check '[ $? -ne 0 ] && grep -q "segmentation masks of different sizes: .*c_mask.png. (image .c.) is 100x101 where the first, .*a_mask.png. (image .a.), is 256x256; 2 of 4 masks differ" "$T/seg_e.log" && [ ! -e "$T/rseg_e/head_config.json" ]' \
  "segmentation masks of two sizes refused ($(cat "$T/seg_e.log"))"
$X --input "$T/segin" --out "$T/fseg_c" --crop center > /dev/null 2>&1
$S $SEG --features "$T/fseg_c" --out "$T/rseg_c" > "$T/seg_c.log" 2>&1
check '[ $? -ne 0 ] && grep -q "extracted with --crop center: .*would not line up.*--resize exact" "$T/seg_c.log"' \
  "segmentation on cropped features refused ($(cat "$T/seg_c.log"))"

echo "RESULT $pass $fail"
