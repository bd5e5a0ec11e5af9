#!/bin/sh
# Issue 18, finding 5 (part): inputs recognised by their content, not their name. A binary --input
# (random bytes, a GIF, an HDF5 file) is one clear line and exit 2, not read as a list of garbage
# paths; a text list is still a list whatever its name; an image under a wrong extension is read.
# The prompt embedding lives at OUT/.prompt_embedding.safetensors, so an image named
# text_embedding.npy gets its own feature file; a cache made before (text_embedding.safetensors)
# is still read. Finding 2 (part): features of images of another aspect ratio are refused when the
# dataset opens, naming both files, both shapes and how many differ.
# Usage: sh tests/cli_inputs.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
MODEL="$ROOT/tests/data/tiny_pipeline"
CHIP="$ROOT/tests/data/demo/images/s2_r0_c0.npy"
T=$(mktemp -d /tmp/satdifuser_cli_inputs.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_inputs: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"
X="--model $MODEL --size 32 --bands 3,2,1 --scale clip"

# binary inputs: one line on stderr, exit 2, nothing extracted
head -c 4096 /dev/urandom > "$T/random.bin"
{ printf 'GIF89a\020\000\020\000\200\000\000'; head -c 2000 /dev/urandom; } > "$T/photo.gif"
{ printf '\211HDF\r\n\032\n\000\000\000\000'; head -c 500 /dev/zero; } > "$T/sample.hdf5"
cp "$T/photo.gif" "$T/fake.png"
for case in "random.bin:binary data (starts with" "photo.gif:a GIF image" "sample.hdf5:an HDF5 file" "fake.png:a GIF image"; do
  f=${case%%:*}; want=${case#*:}
  $S extract $X --input "$T/$f" --out "$T/o_$f" > "$T/e.log" 2>&1
  rc=$?
  check '[ $rc -eq 2 ] && [ $(wc -l < "$T/e.log") -eq 1 ] && grep -qF "$want" "$T/e.log" && grep -qF "$f" "$T/e.log" && [ -z "$(ls "$T/o_$f" 2>/dev/null)" ]' \
    "--input $f: exit $rc, $(wc -l < "$T/e.log") line(s): $(head -c 300 "$T/e.log")"
done
# a GIF inside a folder (named .png): the decoder names the format, the other images are extracted
mkdir -p "$T/dir"; cp "$CHIP" "$T/dir/good.npy"; cp "$T/photo.gif" "$T/dir/bad.png"
$S extract $X --input "$T/dir" --out "$T/od" --quiet > "$T/d.log" 2>&1
check '[ $? -eq 1 ] && grep -q "bad.png: unknown image format: a GIF image" "$T/d.log" && [ -f "$T/od/good.safetensors" ]' \
  "a GIF named .png in a folder ($(cat "$T/d.log"))"
# text lists are lists whatever their name; an image is an image whatever its name
printf '# list\n%s\n' "$CHIP" > "$T/list.dat"
$S extract $X --input "$T/list.dat" --out "$T/ol" --quiet > "$T/l.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/ol/s2_r0_c0.safetensors" ]' "a text list named .dat ($(cat "$T/l.log"))"
# a text file that is not a list of images (a Markdown manifest): its first line that is no image path,
# by file and line, before any naming (was: "``` and ``` would both be written")
printf '# Manifest\n\n```\npng/   175 PNG files\n```\n' > "$T/MANIFEST.md"
$S extract $X --input "$T/MANIFEST.md" --out "$T/om" > "$T/m.log" 2>&1
check '[ $? -eq 2 ] && [ $(wc -l < "$T/m.log") -eq 1 ] && grep -qF "MANIFEST.md:3: '"'"'\`\`\`'"'"' is not an image path" "$T/m.log" && ! grep -q "both be written" "$T/m.log" && [ ! -e "$T/om" ]' \
  "a Markdown file as --input: $(cat "$T/m.log")"
cp "$CHIP" "$T/chip.data"
$S extract $X --input "$T/chip.data" --out "$T/oi" --quiet > "$T/i.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/oi/chip.safetensors" ]' "an NPY named .data ($(cat "$T/i.log"))"

# the prompt embedding: its own name, an image named text_embedding gets its features
mkdir -p "$T/te"; cp "$CHIP" "$T/te/text_embedding.npy"; cp "$CHIP" "$T/te/other.npy"
$S extract $X --input "$T/te" --out "$T/ot" --quiet > "$T/t.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/ot/.prompt_embedding.safetensors" ]' "the prompt embedding at OUT/.prompt_embedding.safetensors ($(cat "$T/t.log"))"
check '$BIN info "$T/ot/text_embedding.safetensors" 2>/dev/null | grep -q "feat.0.0" && $BIN info "$T/ot/.prompt_embedding.safetensors" 2>/dev/null | grep -q "text_embedding"' \
  "an image named text_embedding has its feature file, the embedding its own"
$S extract $X --input "$T/te" --out "$T/ot" --quiet > "$T/t2.log" 2>&1
check '[ $? -eq 0 ]' "rerun: both files validate ($(cat "$T/t2.log"))"
cp "$CHIP" "$T/.prompt_embedding.npy"
$S extract $X --input "$T/.prompt_embedding.npy" --out "$T/ox" > "$T/x.log" 2>&1
check '[ $? -eq 2 ] && grep -q "prompt embedding: rename the image" "$T/x.log"' "an image of the reserved name is refused ($(cat "$T/x.log"))"
# a cache made before: its text_embedding.safetensors is read (kept, not written again under the new name)
mkdir -p "$T/old"; cp "$CHIP" "$T/old/a.npy"
$S extract $X --input "$T/old" --out "$T/oo" --quiet > /dev/null 2>&1
mv "$T/oo/.prompt_embedding.safetensors" "$T/oo/text_embedding.safetensors"
cp "$CHIP" "$T/old/b.npy"
$S extract $X --input "$T/old" --out "$T/oo" --quiet > "$T/o.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/oo/b.safetensors" ] && [ -f "$T/oo/text_embedding.safetensors" ] && [ ! -e "$T/oo/.prompt_embedding.safetensors" ]' \
  "an old cache's text_embedding.safetensors is read and kept ($(cat "$T/o.log"); $(ls -A "$T/oo" | tr '\n' ' '))"

# mixed image sizes: refused before training, both files and shapes named
mkdir -p "$T/mx"
for i in s2_r0_c0 s2_r0_c1 s3_r0_c0 s4_r0_c0; do cp "$ROOT/tests/data/demo/images/$i.npy" "$T/mx/"; done
cp "$ROOT/tests/data/tiff_mm_f32_lzw_pred3_rgb.tif" "$T/mx/wide.tif"  # 30x40: 32x42 at --size 32
$S extract --model "$MODEL" --input "$T/mx" --out "$T/omx" --size 32 --scale clip --quiet > /dev/null 2>&1
printf 'image,split,label\ns2_r0_c0,train,0\ns2_r0_c1,train,1\ns3_r0_c0,val,0\nwide,val,1\ns4_r0_c0,test,1\n' > "$T/mx.csv"
$S train --features "$T/omx" --labels "$T/mx.csv" --task cls --projection-dim 16 --num-norm-groups 4 --quiet --out "$T/mxrun" > "$T/mx.log" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "different sizes: .wide. has .feat.0.0. of shape (48, 4, 5) where .s2_r0_c0. (the first) has (48, 4, 4); 1 of 5 files" "$T/mx.log" && grep -q "\[3, 30, 40\] vs \[4, 32, 32\]" "$T/mx.log" && [ ! -e "$T/mxrun/head_config.json" ]' \
  "mixed sizes: exit $rc, $(cat "$T/mx.log")"

echo "RESULT $pass $fail"
