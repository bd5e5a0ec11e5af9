#!/bin/sh
# JPEG inputs end to end (issue 18): `extract --input photo.jpg` with the tiny pipeline gives the
# same feature tensors as the same pixels decoded by libjpeg-turbo (python3-pil, the .npy beside each
# test file); gray and progressive JPEGs, a list file naming JPEGs and class folders of .jpg/.jpeg work; a truncated JPEG and an
# arithmetic-coded one are refused with one message naming the file, nothing written.
# Usage: sh tests/cli_jpeg.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
MODEL="$ROOT/tests/data/tiny_pipeline"
J="$ROOT/tests/data/jpeg"
T=$(mktemp -d /tmp/satdifuser_cli_jpeg.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_jpeg: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"
X="--model $MODEL --size 32"

# the tensor bytes of a safetensors file (after the 8-byte little-endian header length and the header)
payload() {
  n=$(od -An -tu1 -N4 "$1" | awk '{print $1 + 256 * $2 + 65536 * $3 + 16777216 * $4}')
  tail -c +$((8 + n + 1)) "$1"
}

for case in naip_id_000051_q85_420:1,2,3 progressive_gray:1,1,1 kodim23_crop_q92_420:1,2,3; do
  name=${case%%:*}; B="--bands ${case#*:}"
  mkdir -p "$T/$name"
  cp "$J/$name.jpg" "$T/$name/img.jpg"; cp "$J/$name.npy" "$T/$name/img.npy"
  $S extract $X $B --input "$T/$name/img.jpg" --out "$T/$name/oj" --quiet > "$T/$name/j.log" 2>&1
  check '[ $? -eq 0 ] && [ -f "$T/$name/oj/img.safetensors" ]' "extract $name.jpg: $(head -c 300 "$T/$name/j.log")"
  $S extract $X $B --input "$T/$name/img.npy" --out "$T/$name/on" --quiet > "$T/$name/n.log" 2>&1
  check '[ $? -eq 0 ] && [ -f "$T/$name/on/img.safetensors" ]' "extract $name.npy: $(head -c 300 "$T/$name/n.log")"
  payload "$T/$name/oj/img.safetensors" > "$T/$name/pj" 2>/dev/null; payload "$T/$name/on/img.safetensors" > "$T/$name/pn" 2>/dev/null
  check '[ -s "$T/$name/pj" ] && cmp -s "$T/$name/pj" "$T/$name/pn"' "$name: features of the JPEG differ from those of PIL's pixels"
done
"$BIN" info "$T/naip_id_000051_q85_420/oj/img.safetensors" > "$T/info.txt" 2>&1
check 'grep -q "source_shape = \[3, 256, 256\]" "$T/info.txt" && grep -q "\"scale\": \"auto\"" "$T/info.txt"' \
  "metadata of a JPEG's features: $(grep -E 'source_shape|preprocessing' "$T/info.txt")"

# a list file naming JPEGs
printf '%s\n%s\n' "$J/rgb_420.jpg" "$J/sampling_411.jpg" > "$T/list.txt"
$S extract $X --input "$T/list.txt" --out "$T/ol" --quiet > "$T/l.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/ol/rgb_420.safetensors" ] && [ -f "$T/ol/sampling_411.safetensors" ]' \
  "a list of JPEGs: $(head -c 300 "$T/l.log")"

# a class-folder dataset of JPEGs (EuroSAT / UC Merced style): .jpg and .jpeg are found in folder scans
mkdir -p "$T/cls/Forest" "$T/cls/River"
cp "$J/rgb_420.jpg" "$T/cls/Forest/f1.jpg"; cp "$J/progressive_420.jpg" "$T/cls/Forest/f2.JPEG"
cp "$J/naip_id_000138_q85_420.jpg" "$T/cls/River/r1.jpeg"
$S extract $X --input "$T/cls" --out "$T/oc" --quiet > "$T/c.log" 2>&1
check '[ $? -eq 0 ] && [ -f "$T/oc/Forest/f1.safetensors" ] && [ -f "$T/oc/Forest/f2.safetensors" ] && [ -f "$T/oc/River/r1.safetensors" ]' \
  "class folders of JPEGs: $(head -c 300 "$T/c.log"; ls -R "$T/oc" 2>/dev/null | tr '\n' ' ')"

# refused: one line naming the file and the reason, no feature file
for case in "bad_trunc_base_70:truncated" "bad_sof9_arith:arithmetic" "bad_cmyk:CMYK"; do
  f=${case%%:*}; want=${case#*:}
  cp "$J/$f.jpg" "$T/$f.jpg"
  $S extract $X --input "$T/$f.jpg" --out "$T/o_$f" > "$T/e.log" 2>&1
  rc=$?
  check '[ $rc -ne 0 ] && grep -qF "$f.jpg" "$T/e.log" && grep -qF "$want" "$T/e.log" && [ -z "$(ls "$T/o_$f" 2>/dev/null)" ]' \
    "$f.jpg: exit $rc: $(head -c 300 "$T/e.log")"
done

echo "cli_jpeg: $pass passed, $fail failed"
echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
