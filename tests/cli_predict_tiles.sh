#!/bin/sh
# Issue 18, scene-scale inference: predict --tile N [--overlap K] on a real GeoTIFF (a 120x100 crop
# of rasterio's Landsat RGB.byte.tif with its georeferencing, tests/data/scene, made by
# weights_tools/make_scene_test_data.py) with the tiny pipeline and a head trained here:
#   - the GeoTIFF map carries the input's georeferencing tags (read back by `satdifuser info`, our
#     reader; Pillow 9.4 and tifffile 2023.2.3 read the same tags at dev time), a palette and a preview;
#   - where one window alone covers the scene, the tiled map equals `predict` on that window cut
#     out by numpy (tests/data/scene/win_X_Y.npy), and the overlaps are blended (they differ);
#   - nodata pixels (all bands 0, GDAL_NODATA 0) get class 255; 1 and 2 threads give the same map;
#   - bad arguments are refused before computing; SIGINT leaves no output and no temporary file.
# Usage: sh tests/cli_predict_tiles.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
MODEL="$ROOT/tests/data/tiny_pipeline"
D="$ROOT/tests/data/scene"
SCENE="$D/rgb_byte_crop.tif"
T=$(mktemp -d /tmp/satdifuser_cli_tiles.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_predict_tiles: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"

# A segmentation head on 8 other windows of the same scene (a made-up dark/mid/bright mask).
$S extract --model "$MODEL" --input "$D/train" --out "$T/feat" --size 32 --quiet > "$T/x.log" 2>&1
check '[ $? -eq 0 ]' "extract ($(tail -n 1 "$T/x.log"))"
{ echo "# classes: dark,mid,bright"; for k in 0 1 2 3 4 5; do echo "chip_$k,train,$D/masks/chip_$k.png"; done
  for k in 6 7; do echo "chip_$k,val,$D/masks/chip_$k.png"; done; } > "$T/seg.csv"
$S train --features "$T/feat" --labels "$T/seg.csv" --task seg --fuser gw --corrected --projection-dim 16 \
  --num-norm-groups 4 --channels 16 --epochs 5 --warmup-epochs 0 --batch-size 2 --quiet --out "$T/run" > "$T/t.log" 2>&1
check '[ $? -eq 0 ]' "train ($(tail -n 1 "$T/t.log"))"

# GeoTIFF out: tags as the input's, palette, nodata, preview.
$S predict --model "$MODEL" --head "$T/run" --input "$SCENE" --out "$T/map.tif" --tile 32 --overlap 8 > "$T/p.log" 2> "$T/p.err"
check '[ $? -eq 0 ] && [ -s "$T/map.tif" ] && [ -s "$T/map_preview.png" ]' "tiled predict to .tif ($(tail -n 2 "$T/p.err"))"
check 'grep -q "5 x 4 windows of 32 (overlap 8, stride 24)" "$T/p.err" && grep -q "\[20/20 windows, row 4/4\] 100.0%" "$T/p.err"' \
  "windows and progress lines ($(head -n 3 "$T/p.err" | tr '\n' ' '))"
check 'grep -q "km^2 per hour at 10 m" "$T/p.log"' "throughput printed"
$BIN info "$SCENE" > "$T/in.info" 2>&1
$BIN info "$T/map.tif" > "$T/out.info" 2>&1
for tag in geotransform epsg ModelPixelScale ModelTiepoint GeoKeyDirectory GeoDoubleParams GeoAsciiParams; do
  a=$(grep "^  $tag " "$T/in.info"); b=$(grep "^  $tag " "$T/out.info")
  check '[ -n "$a" ] && [ "$a" = "$b" ]' "$tag: input '$a', map '$b'"
done
check 'grep -q "TIFF 120x100, 1 band of uint8, strips, compression Deflate (Adobe), photometric 3" "$T/out.info"' \
  "map header ($(head -n 1 "$T/out.info"))"
check 'grep -q "^  nodata 255$" "$T/out.info"' "map nodata 255"

# .npy out: the tiled map against `predict` on single windows cut out of the scene.
$S predict --model "$MODEL" --head "$T/run" --input "$SCENE" --out "$T/map.npy" --tile 32 --overlap 8 > /dev/null 2>&1
check '[ $? -eq 0 ]' "tiled predict to .npy"
# npy_values FILE: one uint8 per line (row-major) after the NPY v1 header (10 + HEADER_LEN bytes).
npy_values() {
  hl=$(od -A n -t u1 -j 8 -N 2 "$1" | awk '{print $1 + 256 * $2}')
  od -A n -t u1 -v -j $((10 + hl)) "$1" | tr -s ' ' '\n' | grep -v '^$'
}
npy_values "$T/map.npy" > "$T/map.txt"
check '[ $(wc -l < "$T/map.txt") -eq 12000 ]' "map.npy holds 120x100 values"
check '[ $(grep -c "^255$" "$T/map.txt") -eq 1805 ]' "1805 nodata pixels (all bands 0) are class 255 ($(grep -c "^255$" "$T/map.txt"))"
classes_seen=""
# window X Y and the part only it covers: x in [XA, XB), y in [YA, YB) (windows at 0,24,48,72,88 x 0,24,48,68)
for w in "0 0 0 24 0 24" "24 24 32 48 32 48" "88 68 104 120 80 100"; do
  set -- $w
  $S predict --model "$MODEL" --head "$T/run" --input "$D/win_$1_$2.npy" --out "$T/w.npy" > /dev/null 2>&1
  npy_values "$T/w.npy" > "$T/w.txt"
  r=$(awk -v X=$1 -v Y=$2 -v XA=$3 -v XB=$4 -v YA=$5 -v YB=$6 '
    NR == FNR { m[NR - 1] = $1; next }
    { i = FNR - 1; x = i % 32 + X; y = int(i / 32) + Y; t = m[y * 120 + x]
      if (t == 255) next
      if (x >= XA && x < XB && y >= YA && y < YB) { n++; if (t != $1) d++; seen[$1] = 1 } else if (t != $1) o++ }
    END { s = ""; for (c in seen) s = s c; printf "%d %d %d %s\n", n, d + 0, o + 0, s }' "$T/map.txt" "$T/w.txt")
  set -- $w; n=${r%% *}; rest=${r#* }; d=${rest%% *}; rest=${rest#* }; o=${rest%% *}; seen=${rest#* }
  check '[ "$d" -eq 0 ]' "window ($1, $2): $d of $n interior pixels differ from predict on the window alone"
  classes_seen="$classes_seen$seen"; overlap_diff=$((${overlap_diff:-0} + o))
done
check '[ $(echo "$classes_seen" | fold -w1 | sort -u | wc -l) -ge 2 ]' "the compared pixels hold several classes ($classes_seen)"
check '[ "$overlap_diff" -gt 0 ]' "the overlaps are blended (they differ from single windows somewhere)"
BIN2="$BIN --threads 2"
$BIN2 predict --model "$MODEL" --head "$T/run" --input "$SCENE" --out "$T/map2.npy" --tile 32 --overlap 8 > /dev/null 2>&1
check 'cmp -s "$T/map.npy" "$T/map2.npy"' "2 threads: the same map"
# another window size and overlap (windows of 40 resized to the run's 32): runs, says so
$S predict --model "$MODEL" --head "$T/run" --input "$SCENE" --out "$T/m40.npy" --tile 40 > /dev/null 2> "$T/m40.err"
check '[ $? -eq 0 ] && grep -q "resized to 32x32" "$T/m40.err" && grep -q "overlap 5" "$T/m40.err"' "--tile 40 ($(head -n 2 "$T/m40.err" | tr '\n' ' '))"

# Without --tile, a GeoTIFF out carries the tags too (the whole image resized, as before).
$S predict --model "$MODEL" --head "$T/run" --input "$SCENE" --out "$T/one.tif" > /dev/null 2>&1
$BIN info "$T/one.tif" > "$T/one.info" 2>&1
check '[ "$(grep "^  ModelTiepoint" "$T/one.info")" = "$(grep "^  ModelTiepoint" "$T/in.info")" ] && [ -s "$T/one_preview.png" ]' \
  "predict without --tile to .tif keeps the georeferencing"

# Bad arguments: a clear message, exit 2, nothing written.
P="$S predict --model $MODEL --head $T/run --input $SCENE"
for case in "--tile 32 --overlap 32|must be smaller than --tile" "--tile 32 --overlap 40|must be smaller than --tile" \
            "--overlap 8|give --tile N too" "--tile 4|from 8 to 65536" "--tile abc|expected a whole number" \
            "--tile 32 --overlap -1|from 0" "--tile 128|smaller than one window" \
            "--tile 32 --scale percentile:2,98|fixed numbers" "--tile 32 --features $T/feat/chip_0.safetensors|cannot use --features"; do
  args=${case%%|*}; want=${case#*|}
  $P --out "$T/bad.tif" $args > "$T/b.log" 2>&1
  rc=$?
  check '[ $rc -eq 2 ] && grep -q -- "$want" "$T/b.log" && [ ! -e "$T/bad.tif" ]' "$args: exit $rc, $(head -n 1 "$T/b.log")"
done
$P --out "$T/bad.json" --tile 32 > "$T/b.log" 2>&1
check '[ $? -eq 2 ] && grep -q "NAME.png, NAME.tif (GeoTIFF) or NAME.npy" "$T/b.log"' "seg head to .json refused ($(head -n 1 "$T/b.log"))"

# SIGINT: stops between windows, exit 130, no map, no preview, no temporary file.
mkdir "$T/int"
SATDIFUSER_TEST_STOP_AFTER=3 $P --out "$T/int/map.tif" --tile 32 --overlap 8 > "$T/i.log" 2>&1
rc=$?
check '[ $rc -eq 130 ] && grep -q "stopped by signal 2; nothing written" "$T/i.log" && [ -z "$(ls -A "$T/int")" ]' \
  "SIGINT after 3 windows: exit $rc, $(tail -n 1 "$T/i.log"), left: $(ls -A "$T/int")"
# a real Ctrl-C from outside, during a longer run (16-pixel windows: 154 of them)
$P --out "$T/int/map.tif" --tile 16 --overlap 8 > "$T/k.log" 2>&1 &
pid=$!
n=0; while [ $n -lt 200 ] && ! grep -q "windows, row" "$T/k.log" 2>/dev/null; do sleep 0.05; n=$((n + 1)); done
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
check '[ $rc -eq 130 ] && [ -z "$(ls -A "$T/int")" ]' "kill -INT: exit $rc, left: $(ls -A "$T/int"), $(tail -n 1 "$T/k.log")"

echo "RESULT $pass $fail"
