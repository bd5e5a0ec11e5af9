#!/bin/sh
# Issue 19: GEO-Bench task folders. `satdifuser geobench export` on the tiny task folders of
# tests/data/geobench (written by weights_tools/make_hdf5_test_data.py as geobench writes
# samples: h5py datasets per band, a pickled attribute, partitions, label_map.json /
# label_stats.json, task_specs.pkl) against the export numpy computed (expected/: images and
# masks byte for byte, labels.csv line for line); partitions, --bands, the real chesapeake
# samples, `info` on HDF5, and bad input (missing partition, sample file or band, labels that
# disagree, a corrupt file): exit 1, a message naming file / sample / field, nothing written.
# Usage: sh tests/cli_geobench.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
GB="$ROOT/tests/data/geobench"
T=$(mktemp -d /tmp/satdifuser_cli_geobench.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_geobench: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"

# 1. the three task types against numpy's export
for t in cls multilabel seg; do
  $S geobench export "$GB/m-tiny-$t" --out "$T/$t" --quiet > "$T/$t.log" 2>&1
  check '[ $? -eq 0 ]' "export m-tiny-$t: $(cat "$T/$t.log")"
  check 'tail -n +2 "$T/$t/labels.csv" | cmp -s - "$GB/m-tiny-$t/expected/labels.csv"' "m-tiny-$t: labels.csv differs from expected"
  n=0; same=0
  for f in "$GB/m-tiny-$t"/expected/images/*.npy "$GB/m-tiny-$t"/expected/masks/*.npy; do
    [ -f "$f" ] || continue
    n=$((n + 1)); cmp -s "$f" "$T/$t/${f#$GB/m-tiny-$t/expected/}" && same=$((same + 1))
  done
  check '[ $n -ge 5 ] && [ $same -eq $n ]' "m-tiny-$t: $same of $n arrays byte-identical to numpy's"
done
check 'head -n 2 "$T/cls/labels.csv" | grep -q "^# classes: Forest,River,Sea; Lake$"' "class names from task_specs.pkl (comma -> ;)"
check '[ ! -d "$T/cls/masks" ] && [ -d "$T/seg/masks" ]' "classification writes no masks, segmentation does"

# 2. another partition, and --bands in another order (channel bytes moved with the band)
$S geobench export "$GB/m-tiny-cls" --out "$T/half" --partition 0.50x_train --quiet > "$T/half.log" 2>&1
check '[ $? -eq 0 ] && [ $(grep -c ",train," "$T/half/labels.csv") -eq 3 ] && [ $(ls "$T/half/images" | wc -l) -eq 5 ]' \
  "--partition 0.50x_train: 3 train rows, 5 images ($(cat "$T/half.log"))"
$S geobench export "$GB/m-tiny-cls" --out "$T/bands" --bands "04 - Red, 02 - Blue" --quiet > "$T/bands.log" 2>&1
check '[ $? -eq 0 ] && head -c 128 "$T/bands/images/s003_m-tiny-cls.npy" | grep -q "(2, 8, 8)"' "--bands: 2 channels ($(cat "$T/bands.log"))"
e="$GB/m-tiny-cls/expected/images/s003_m-tiny-cls.npy"; g="$T/bands/images/s003_m-tiny-cls.npy"
check '[ "$(tail -c +$((129 + 512)) "$e" | head -c 256 | od -An -tx1)" = "$(tail -c +129 "$g" | head -c 256 | od -An -tx1)" ] &&
       [ "$(tail -c +129 "$e" | head -c 256 | od -An -tx1)" = "$(tail -c +$((129 + 256)) "$g" | head -c 256 | od -An -tx1)" ]' \
  "--bands '04 - Red, 02 - Blue': channels are red then blue"

# 3. the real GEO-Bench chesapeake samples (their own partition lists every sample in every split:
#    refused; a copy with one split per sample exports, arrays checked in tests/test_hdf5.c)
CH=""
for d in /work/shared/data/geobench/cvpr_chesapeake_landcover ../shared/data/geobench/cvpr_chesapeake_landcover; do
  [ -f "$d/id_000051.hdf5" ] && CH=$d && break
done
if [ -n "$CH" ]; then
  $S geobench export "$CH" --out "$T/ch0" > "$T/ch0.log" 2>&1
  check '[ $? -eq 1 ] && grep -q "id_000051.*listed twice.*train.*valid" "$T/ch0.log" && [ ! -e "$T/ch0" ]' "a sample in two splits: $(cat "$T/ch0.log")"
  mkdir "$T/chc"; cp "$CH"/* "$T/chc/"; chmod u+w "$T/chc"/*
  printf '{"train": ["id_000051", "id_000138"], "valid": ["id_000181"], "test": ["id_000184", "id_000367"]}' > "$T/chc/default_partition.json"
  $S geobench export "$T/chc" --out "$T/ch" > "$T/ch.log" 2>&1
  check '[ $? -eq 0 ] && grep -q "task seg, 7 classes" "$T/ch/labels.csv" && grep -q "^id_000181,val,masks/id_000181.npy$" "$T/ch/labels.csv"' "chesapeake: $(cat "$T/ch.log")"
  check 'head -c 128 "$T/ch/images/id_000051.npy" | grep -q "<f4.*(4, 256, 256)" && head -c 128 "$T/ch/masks/id_000051.npy" | grep -q "|u1.*(256, 256)"' "chesapeake: image (4, 256, 256) float32, mask uint8"
  $S info "$CH/id_000051.hdf5" > "$T/info.log" 2>&1
  check '[ $? -eq 0 ] && grep -q "^  NearInfrared  *float32 (LE)  *(256, 256) contiguous$" "$T/info.log" && grep -q "attribute pickle: vlen string" "$T/info.log"' "info FILE.hdf5: $(head -c 400 "$T/info.log")"
else
  echo "SKIP cli_geobench: ../shared/data/geobench not found"
fi

# 4. bad input: exit 1, the file / sample / field named, nothing written (no OUT, no OUT.partial-*)
nothing() { [ ! -e "$T/x" ] && [ -z "$(ls -d "$T"/x.partial-* 2>/dev/null)" ]; }
$S geobench export "$GB/m-tiny-cls" --out "$T/x" --partition 0.25x_train > "$T/e1" 2>&1
check '[ $? -eq 1 ] && grep -q "0.25x_train_partition.json" "$T/e1" && nothing' "missing partition: $(cat "$T/e1")"
cp -r "$GB/m-tiny-cls" "$T/c2"; rm "$T/c2/s004_m-tiny-cls.hdf5"
$S geobench export "$T/c2" --out "$T/x" > "$T/e2" 2>&1
check '[ $? -eq 1 ] && grep -q "s004_m-tiny-cls.hdf5: sample .s004_m-tiny-cls. of partition .default. has no file" "$T/e2" && nothing' "sample without its file: $(cat "$T/e2")"
$S geobench export "$GB/m-tiny-cls" --out "$T/x" --bands "04 - Red,NIR" > "$T/e3" 2>&1
check '[ $? -eq 1 ] && grep -q "has no band .NIR.; it has .02 - Blue., .03 - Green., .04 - Red." "$T/e3" && nothing' "unknown band: $(cat "$T/e3")"
cp -r "$GB/m-tiny-cls" "$T/c4"; sed 's/"s001_m-tiny-cls"/"s001_m-tiny-cls-moved"/; s/"s000_m-tiny-cls"/"s001_m-tiny-cls"/' "$GB/m-tiny-cls/label_map.json" > "$T/c4/label_map.json"
$S geobench export "$T/c4" --out "$T/x" > "$T/e4" 2>&1
check '[ $? -eq 1 ] && grep -q "s001_m-tiny-cls.hdf5: the pickled .label. is 1 but label_map.json says 0" "$T/e4" && nothing' "labels disagree: $(cat "$T/e4")"
cp -r "$GB/m-tiny-seg" "$T/c5"; head -c 1500 "$GB/m-tiny-seg/s002_m-tiny-seg.hdf5" > "$T/c5/s002_m-tiny-seg.hdf5"
$S geobench export "$T/c5" --out "$T/x" > "$T/e5" 2>&1
check '[ $? -eq 1 ] && grep -q "s002_m-tiny-seg.hdf5" "$T/e5" && grep -q "sample .s002_m-tiny-seg." "$T/e5" && nothing' "corrupt HDF5: $(cat "$T/e5")"
mkdir "$T/x"; : > "$T/x/keep"
$S geobench export "$GB/m-tiny-cls" --out "$T/x" > "$T/e6" 2>&1
check '[ $? -eq 1 ] && grep -q "not an empty folder" "$T/e6" && [ -f "$T/x/keep" ]' "a non-empty --out is kept: $(cat "$T/e6")"

# 5. extract --input TASKDIR: the same feature tensors as from the exported NPY files with the same
#    options; --bands by name = by index into bands_order; --partition; names not in the file
X="$S extract --model $ROOT/tests/data/tiny_pipeline --size 64 --quiet"
tensors() { for f in "$1"/*.safetensors; do echo "$(basename "$f")"; $S info --digest "$f" | sed 1d | grep -v "metadata"; done; }
$X --input "$GB/m-tiny-seg" --out "$T/ft_seg" > "$T/x1" 2>&1
check '[ $? -eq 0 ] && [ $(ls "$T/ft_seg" | wc -l) -eq 5 ]' "extract --input TASKDIR: $(cat "$T/x1")"
$X --input "$T/seg/images" --out "$T/fn_seg" > "$T/x2" 2>&1
check '[ $? -eq 0 ] && tensors "$T/ft_seg" | grep -q "feat.0.0 .*F32" && [ "$(tensors "$T/ft_seg")" = "$(tensors "$T/fn_seg")" ]' "seg: task-folder features differ from the exported NPY's ($(cat "$T/x2"))"
$X --input "$GB/m-tiny-cls" --out "$T/ft_cls" --bands "04 - Red,03 - Green,02 - Blue" --scale 4095 > "$T/x3" 2>&1
$X --input "$T/cls/images" --out "$T/fn_cls" --bands 3,2,1 --scale 4095 > "$T/x4" 2>&1
check '[ $(ls "$T/ft_cls" | wc -l) -eq 8 ] && [ "$(tensors "$T/ft_cls")" = "$(tensors "$T/fn_cls")" ]' "cls --bands by name: features differ ($(cat "$T/x3" "$T/x4"))"
$X --input "$GB/m-tiny-cls" --out "$T/fn_cls2" --bands 3,2,1 --scale 4095 > "$T/x5" 2>&1
check '[ "$(tensors "$T/fn_cls2")" = "$(tensors "$T/fn_cls")" ]' "cls --bands by index on the task folder ($(cat "$T/x5"))"
$X --input "$GB/m-tiny-cls" --out "$T/fh" --partition 0.50x_train > "$T/x6" 2>&1
check '[ $? -eq 0 ] && [ $(ls "$T/fh" | wc -l) -eq 5 ]' "--partition 0.50x_train: 5 samples ($(cat "$T/x6"))"
$X --input "$GB/m-tiny-cls" --out "$T/fx" --bands "04 - Red,NIR,02 - Blue" > "$T/x7" 2>&1
check '[ $? -eq 1 ] && grep -q "no band .NIR. (--bands); the bands are .02 - Blue., .03 - Green., .04 - Red." "$T/x7"' "unknown band name: $(cat "$T/x7")"
$X --input "$GB/m-tiny-cls" --out "$T/fx" --partition nope > "$T/x8" 2>&1
check '[ $? -ne 0 ] && grep -q "nope_partition.json" "$T/x8"' "missing partition: $(cat "$T/x8")"

# 6. --shard auto: a SLURM array (sbatch --array=1-3) covers the task once, same tensors as one process
for id in 1 2 3; do
  SLURM_ARRAY_TASK_ID=$id SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=3 SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_STEP=1 \
    $X --input "$GB/m-tiny-cls" --out "$T/fs" --bands "04 - Red,03 - Green,02 - Blue" --scale 4095 --shard auto > "$T/s$id" 2>&1
  check '[ $? -eq 0 ]' "--shard auto, task $id: $(cat "$T/s$id")"
done
check '[ "$(tensors "$T/fs")" = "$(tensors "$T/ft_cls")" ]' "--shard auto over 3 tasks: not the features of one process"
SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=15 SLURM_ARRAY_TASK_COUNT=8 SLURM_ARRAY_TASK_STEP=2 \
  $X --input "$GB/m-tiny-cls" --out "$T/fs2" --shard auto > "$T/s5" 2>&1
$X --input "$GB/m-tiny-cls" --out "$T/fs3" --shard 2/8 > "$T/s6" 2>&1
check '[ "$(ls "$T/fs2")" = "$(ls "$T/fs3")" ] && [ $(ls "$T/fs2" | wc -l) -eq 1 ]' "--array=1-15:2, task id 5 is shard 2/8 ($(cat "$T/s5"))"
env -u SLURM_ARRAY_TASK_ID $X --input "$GB/m-tiny-cls" --out "$T/fs4" --shard auto > "$T/s7" 2>&1
check '[ $? -eq 2 ] && grep -q "SLURM_ARRAY_TASK_ID is not set" "$T/s7"' "--shard auto outside an array job: $(cat "$T/s7")"
SLURM_ARRAY_TASK_ID=3 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=7 SLURM_ARRAY_TASK_COUNT=3 \
  $X --input "$GB/m-tiny-cls" --out "$T/fs4" --shard auto > "$T/s8" 2>&1
check '[ $? -eq 2 ] && grep -q "not evenly spaced" "$T/s8"' "--array=1,3,7 refused: $(cat "$T/s8")"

# 7. extract --check: nothing computed or written; missing, half-written, other settings listed
chk() { $X --input "$GB/m-tiny-cls" --out "$T/ft_cls" --bands "04 - Red,03 - Green,02 - Blue" "$@" --check > "$T/ck" 2>&1; }
chk --scale 4095
check '[ $? -eq 0 ] && grep -q "8 done, 0 missing, 0 half-written, 0 made with other settings" "$T/ck"' "--check on a complete folder: $(cat "$T/ck")"
rm "$T/ft_cls/s005_m-tiny-cls.safetensors"; mv "$T/ft_cls/s006_m-tiny-cls.safetensors" "$T/ft_cls/s006_m-tiny-cls.safetensors.tmp.2147483646"
before=$(ls "$T/ft_cls")
chk --scale 4095
check '[ $? -eq 1 ] && grep -q "^missing: s005_m-tiny-cls$" "$T/ck" && grep -q "^half-written: s006_m-tiny-cls (.*tmp.2147483646, writer gone)$" "$T/ck" &&
       grep -q "6 done, 1 missing, 1 half-written, 0 made" "$T/ck" && [ "$(ls "$T/ft_cls")" = "$before" ]' "--check lists missing and half-written, writes nothing: $(cat "$T/ck")"
chk --scale clip
check '[ $? -eq 1 ] && grep -q "0 done, 1 missing, 1 half-written, 6 made with other settings" "$T/ck" && grep -q "^other settings or broken: s000_m-tiny-cls: .*scale" "$T/ck"' "--check with another --scale: $(cat "$T/ck")"

# 8. geobench's alt_names (pack_to_3d matches them: the original asks m-eurosat for "04","03","02")
$S geobench export "$GB/m-tiny-seg" --out "$T/alt" --bands "red,green,blue" --quiet > "$T/a1" 2>&1
n=0; same=0
for f in "$GB/m-tiny-seg"/expected/images/*.npy; do n=$((n + 1)); cmp -s "$f" "$T/alt/images/${f##*/}" && same=$((same + 1)); done
check '[ $n -eq 5 ] && [ $same -eq 5 ]' "export --bands red,green,blue (alt names) = the default bands ($(cat "$T/a1"))"
$X --input "$GB/m-tiny-cls" --out "$T/falt" --bands "04 - red,03 - green,02 - blue" --scale 4095 > "$T/a2" 2>&1
check '[ $? -eq 0 ] && [ "$(tensors "$T/falt")" = "$(tensors "$T/fn_cls")" ]' "extract --bands by alt names ($(cat "$T/a2"))"

# 9. GeoTIFF band descriptions (GDAL_METADATA <Item name="DESCRIPTION" sample="i">, written by PIL and,
#    for the big-endian BigTIFF, by struct in weights_tools/make_described_tiff.py): names pick the
#    same bands as their numbers
TIF="$GB/described_rgb.tif"
$X --input "$TIF" --out "$T/tn" --bands "Red,GREEN & more,nir" > "$T/t1" 2>&1
check '[ $? -eq 0 ]' "extract --bands by GeoTIFF description: $(cat "$T/t1")"
$X --input "$TIF" --out "$T/ti" --bands 2,3,1 > "$T/t2" 2>&1
$X --input "$TIF" --out "$T/tj" --bands 1,2,3 > "$T/t3" 2>&1
check '[ -n "$(tensors "$T/tn")" ] && [ "$(tensors "$T/tn")" = "$(tensors "$T/ti")" ] && [ "$(tensors "$T/tn")" != "$(tensors "$T/tj")" ]' \
  "GeoTIFF descriptions Red,green,nir are not bands 2,3,1 ($(cat "$T/t2" "$T/t3"))"
$X --input "$GB/described_bigtiff_mm.tif" --out "$T/tm" --bands "Red,GREEN & more,nir" > "$T/t6" 2>&1
check '[ $? -eq 0 ] && [ "$(tensors "$T/tm" | sed 1d)" = "$(tensors "$T/ti" | sed 1d)" ]' "big-endian BigTIFF descriptions: $(cat "$T/t6")"
$X --input "$TIF" --out "$T/tx" --bands "Red,blue" > "$T/t4" 2>&1
check '[ $? -eq 1 ] && grep -q "no band described as .blue. (--bands); the descriptions are 1 .nir., 2 .Red., 3 .green & more." "$T/t4"' "unknown description: $(cat "$T/t4")"
$X --input "$GB/described_none.tif" --out "$T/tx" --bands "Red,green,nir" > "$T/t5" 2>&1
check '[ $? -eq 1 ] && grep -q "described_none.tif: .*has no band descriptions" "$T/t5"' "no descriptions: $(cat "$T/t5")"

echo "cli_geobench.sh: $pass passed, $fail failed"
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
