#!/bin/sh
# Honest scaling (issue 18, finding 4) on real rasters of ../shared/data (MANIFEST.md there):
# --scale auto warns per band how many pixels it clipped (counts from numpy, tests/data/scaling/
# make_stats.py) and says when a band became constant (eo-learn's DEM.npy, a uint16 GeoTIFF
# above 4095); --scale percentile:LO,HI and --scale minmax give the same feature tensors as
# minmax:STATS.json with numpy's percentiles / min / max (GDAL nodata left out); a 16-bit PNG
# of PngSuite is /65535 (= its pypng-decoded raw.npy with --scale 65535); every file records
# the scaling applied; train refuses a cache that mixes scaling modes, naming two files.
# Usage: sh tests/cli_scaling.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
MODEL="$ROOT/tests/data/tiny_pipeline"
R="$ROOT/tests/data/scaling"
D=${SATDIFUSER_SHARED_DATA:-$ROOT/../shared/data}
[ -f "$D/MANIFEST.md" ] || D=/work/shared/data  # a clone elsewhere (e.g. /tmp) on this machine
pass=0; fail=0
if [ ! -f "$D/MANIFEST.md" ]; then echo "SKIP cli_scaling: no ../shared/data"; echo "RESULT 0 0"; exit 0; fi
T=$(mktemp -d /tmp/satdifuser_cli_scaling.XXXXXX)
trap 'rm -rf "$T"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_scaling: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
X="$BIN --threads 1 extract --model $MODEL --size 32 --quiet"

# the tensor bytes of a safetensors file (after the 8-byte little-endian header length and the header)
payload() {
  n=$(od -An -tu1 -N4 "$1" | awk '{print $1 + 256 * $2 + 65536 * $3 + 16777216 * $4}')
  tail -c +$((8 + n + 1)) "$1"
}
same_tensors() { payload "$1" > "$T/p1"; payload "$2" > "$T/p2"; [ -s "$T/p1" ] && cmp -s "$T/p1" "$T/p2"; }
meta() { "$BIN" info "$1" 2>/dev/null | grep "metadata $2 = "; }

# 1. auto on a uint16 GeoTIFF with values up to 65035: 46100 of 66045 pixels above 4095, said
$X --input "$D/tiff/rio-tiler/red.tif" --out "$T/red" --bands 1,1,1 > "$T/red.log" 2>&1
check '[ $? -eq 0 ] && grep -q "red.tif: band 1: 46100 of 66045 pixels (69.80%) clipped by --scale auto" "$T/red.log" && grep -q "percentile:2,98" "$T/red.log"' \
  "auto on red.tif warns with the count ($(cat "$T/red.log"))"
check '[ "$(grep -c "band 1" "$T/red.log")" = 1 ]' "a band selected three times is said once ($(cat "$T/red.log"))"
check 'meta "$T/red/red.safetensors" scaling | grep -q "\"mode\": \"4095\", \"auto\": .*\"range\": \[4095, 4095, 4095\], \"clipped_low\": \[0, 0, 0\], \"clipped_high\": \[46100, 46100, 46100\]"' \
  "red.tif records its scaling ($(meta "$T/red/red.safetensors" scaling))"
# every pixel above 4095 (7146..13464): the band is constant, said as such
$X --input "$D/tiff/eo-learn/import-tiff-test1.tiff" --out "$T/t1" --bands 1,1,1 > "$T/t1.log" 2>&1
check '[ $? -eq 0 ] && grep -q "band 1: every pixel (6048) is outside \[0, 1\] after --scale auto" "$T/t1.log"' \
  "a uint16 band all above 4095 ($(cat "$T/t1.log"))"
# eo-learn's DEM (float32 664..801): auto clips floats to [0, 1], every pixel lost; clip says it too
$X --input "$D/npy/eo-learn/DEM.npy" --out "$T/dem" --bands 1,1,1 > "$T/dem.log" 2>&1
check '[ $? -eq 0 ] && grep -q "DEM.npy: band 1: every pixel (10100) is outside \[0, 1\] after --scale auto (floats" "$T/dem.log"' \
  "DEM.npy under auto ($(cat "$T/dem.log"))"
$X --input "$D/npy/eo-learn/DEM.npy" --out "$T/demc" --bands 1,1,1 --scale clip > "$T/demc.log" 2>&1
check 'grep -q "every pixel (10100) is outside \[0, 1\] after --scale clip" "$T/demc.log"' "DEM.npy under clip ($(cat "$T/demc.log"))"
# a folder of 22 such files: 20 listed, then a count
mkdir -p "$T/many"
for i in 01 02 03 04 05 06 07 08 09 10 11 12 13 14 15 16 17 18 19 20 21 22; do cp "$D/tiff/eo-learn/import-tiff-test1.tiff" "$T/many/t$i.tif"; done
$X --input "$T/many" --out "$T/omany" --bands 1,1,1 > "$T/many.log" 2>&1
check '[ $? -eq 0 ] && [ "$(grep -c "every pixel" "$T/many.log")" = 20 ] && grep -q "warning: 2 more images had pixels clipped by --scale auto" "$T/many.log"' \
  "22 files: 20 warnings and a count ($(tail -2 "$T/many.log"))"
# no clipping, no warning (ladoga.tif: 1290..1681)
$X --input "$D/tiff/image-tiff/ladoga.tif" --out "$T/lad" --bands 1,1,1 > "$T/lad.log" 2>&1
check '[ $? -eq 0 ] && [ ! -s "$T/lad.log" ]' "ladoga.tif: nothing clipped, nothing said ($(cat "$T/lad.log"))"

# 2. per-image percentile / min-max = the same numbers from numpy given as minmax:STATS.json
for c in "red.tif:tiff/rio-tiler/red.tif:1,1,1:percentile:2,98:red_p2_98" \
         "red.tif:tiff/rio-tiler/red.tif:1,1,1:minmax:red_minmax" \
         "DEM.npy:npy/eo-learn/DEM.npy:1,1,1:percentile:2,98:dem_p2_98" \
         "DEM.npy:npy/eo-learn/DEM.npy:1,1,1:minmax:dem_minmax" \
         "colorado_CL_1.tif:tiff/rio-tiler/colorado_CL_1.tif:1,2,3:percentile:1,99:colorado_p1_99"; do
  file=$(echo "$c" | cut -d: -f2); bands=$(echo "$c" | cut -d: -f3); stats=${c##*:}
  mode=$(echo "$c" | cut -d: -f4-); mode=${mode%:*}
  stem=$(basename "$file"); stem=${stem%.*}
  rm -rf "$T/a" "$T/b"
  $X --input "$D/$file" --out "$T/a" --bands "$bands" --scale "$mode" > "$T/a.log" 2>&1
  $X --input "$D/$file" --out "$T/b" --bands "$bands" --scale "minmax:$R/$stats.json" > "$T/b.log" 2>&1
  check 'same_tensors "$T/a/$stem.safetensors" "$T/b/$stem.safetensors"' \
    "$file --scale $mode = numpy's $stats.json ($(cat "$T/a.log" "$T/b.log"))"
  check 'meta "$T/a/$stem.safetensors" scaling | grep -q "\"mode\": \"$mode\""' "$file: mode $mode recorded"
done
check 'meta "$T/a/colorado_CL_1.safetensors" scaling | grep -q "\"offset\": \[5, 20, 48\], \"range\": \[201, 188, 147\]"' \
  "colorado percentiles per band recorded ($(meta "$T/a/colorado_CL_1.safetensors" scaling))"
# percentile differs from auto's /255 (the test can fail)
$X --input "$D/tiff/rio-tiler/colorado_CL_1.tif" --out "$T/c255" > /dev/null 2>&1
check '! same_tensors "$T/a/colorado_CL_1.safetensors" "$T/c255/colorado_CL_1.safetensors"' "percentile is not /255"
# bad values
$X --input "$D/npy/eo-learn/DEM.npy" --out "$T/x" --scale percentile:98,2 > "$T/x.log" 2>&1
check '[ $? -eq 2 ] && grep -q "percentile:LOW,HIGH with 0 <= LOW < HIGH <= 100" "$T/x.log"' "percentile:98,2 refused ($(cat "$T/x.log"))"
$X --input "$D/npy/eo-learn/DEM.npy" --out "$T/x" --scale 4096 > "$T/x.log" 2>&1
check '[ $? -eq 2 ] && grep -q "expected auto, 4095, 255, 65535, clip, minmax" "$T/x.log"' "--scale 4096 refused ($(cat "$T/x.log"))"

# 3. 16-bit PNG (PngSuite basn2c16, RGB 16-bit) is /65535: the same tensors as pypng's raw samples
#    as NPY with --scale 65535, and not the same as /4095
P="$D/png/pngsuite"
mkdir -p "$T/png" "$T/npy"; cp "$P/basn2c16.png" "$T/png/b.png"; cp "$P/basn2c16.raw.npy" "$T/npy/b.npy"
$X --input "$T/png/b.png" --out "$T/p16" > "$T/p16.log" 2>&1
$X --input "$T/npy/b.npy" --out "$T/n16" --scale 65535 > /dev/null 2>&1
$X --input "$T/npy/b.npy" --out "$T/n4095" --scale 4095 > /dev/null 2>&1
check 'same_tensors "$T/p16/b.safetensors" "$T/n16/b.safetensors"' "16-bit PNG auto = raw / 65535 ($(cat "$T/p16.log"))"
check '! same_tensors "$T/p16/b.safetensors" "$T/n4095/b.safetensors"' "16-bit PNG auto is not /4095"
check 'meta "$T/p16/b.safetensors" scaling | grep -q "\"mode\": \"65535\", \"auto\": \"16-bit PNG"' "16-bit PNG scaling recorded"
check '[ ! -s "$T/p16.log" ]' "full-range 16-bit: nothing clipped, nothing said ($(cat "$T/p16.log"))"

# 4. a cache mixing scaling modes (auto: an 8-bit and a 16-bit PNG) is refused by train, naming two files
mkdir -p "$T/mix"
cp "$P/basn2c08.png" "$T/mix/a8.png"; cp "$P/basn2c16.png" "$T/mix/b16.png"; cp "$P/basn2c08.png" "$T/mix/c8.png"; cp "$P/basn2c08.png" "$T/mix/d8.png"
$X --input "$T/mix" --out "$T/omix" > /dev/null 2>&1
printf 'image,split,label\na8,train,0\nc8,train,1\nb16,val,0\nd8,val,1\n' > "$T/mix.csv"
T1="$BIN --threads 1 train --features $T/omix --labels $T/mix.csv --task cls --projection-dim 16 --num-norm-groups 4 --epochs 1 --quiet"
$T1 --out "$T/run" > "$T/mix.log" 2>&1
rc=$?
check '[ $rc -ne 0 ] && grep -q "different settings: .b16. has scaling mode .65535 (auto: 16-bit PNG.* where .a8. (the first) has .255 (auto: 8-bit" "$T/mix.log" && grep -q "1 of 4 files" "$T/mix.log" && grep -q -- "--allow-mixed-preprocessing" "$T/mix.log" && [ ! -e "$T/run/head_config.json" ]' \
  "mixed scaling refused: exit $rc, $(cat "$T/mix.log")"
$T1 --out "$T/run_ok" --allow-mixed-preprocessing > "$T/mixok.log" 2>&1
check '[ $? -eq 0 ] && grep -q "warning: feature files made with different settings: .b16." "$T/mixok.log" && [ -f "$T/run_ok/best.safetensors" ]' \
  "--allow-mixed-preprocessing: a warning, the run trains ($(tail -3 "$T/mixok.log"))"
# another --size in the same folder: the preprocessing differs
rm -rf "$T/omix2"; mkdir -p "$T/mix2"; cp "$P/basn2c08.png" "$T/mix2/a8.png"; cp "$P/basn2c08.png" "$T/mix2/c8.png"
$X --input "$T/mix2" --out "$T/omix2" > /dev/null 2>&1
cp "$P/basn2c08.png" "$T/mix2/b16.png"; cp "$P/basn2c08.png" "$T/mix2/d8.png"
$BIN --threads 1 extract --model "$MODEL" --size 32 --crop center --quiet --input "$T/mix2/b16.png" --out "$T/omix2" > /dev/null 2>&1
$BIN --threads 1 extract --model "$MODEL" --size 32 --quiet --input "$T/mix2/d8.png" --out "$T/omix2" > /dev/null 2>&1
$BIN --threads 1 train --features "$T/omix2" --labels "$T/mix.csv" --task cls --projection-dim 16 --num-norm-groups 4 --epochs 1 --quiet --out "$T/run2" > "$T/mix2.log" 2>&1
check '[ $? -ne 0 ] && grep -q "different settings: .b16. has preprocessing .*CenterCrop" "$T/mix2.log"' \
  "mixed preprocessing refused ($(cat "$T/mix2.log"))"

echo "RESULT $pass $fail"
