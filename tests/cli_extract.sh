#!/bin/sh
# CLI test of `satdifuser extract` on the tiny bundled pipeline (tests/data/tiny_pipeline):
# a full run; a run stopped halfway (test hook, then a real SIGINT) and resumed, byte-identical
# to the full run; two shards equal to the full run; list input; f16 storage; bad inputs
# (missing model part, too few bands, unreadable PNG, corrupt or foreign feature file) give
# clear errors naming the file and leave nothing half-written.
# Usage: sh tests/cli_extract.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
MODEL="$ROOT/tests/data/tiny_pipeline"
T=$(mktemp -d /tmp/satdifuser_cli_extract.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_extract: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
# Single-threaded: the machine may be shared, and results must not depend on it anyway.
X="$BIN --threads 1 extract --model $MODEL --size 64 --bands 3,2,1 --scale clip --quiet"

mkdir -p "$T/in/sub"
for f in s2_r0_c0 s2_r0_c1 s3_r1_c2; do cp "$ROOT/tests/data/demo/images/$f.npy" "$T/in/"; done
cp "$ROOT/tests/data/demo/images/s4_r2_c2.npy" "$T/in/sub/"
N=4
no_temps() { [ -z "$(find "$1" -name '*.tmp.*' 2>/dev/null)" ]; }
count() { find "$1" -name '*.safetensors' ! -name text_embedding.safetensors ! -name .prompt_embedding.safetensors 2>/dev/null | wc -l | tr -d ' '; }
same_tree() {  # every file of $1 exists in $2 and is byte-identical, and the counts agree
  [ "$(count "$1")" = "$(count "$2")" ] || return 1
  for f in $(cd "$1" && find . -name '*.safetensors'); do cmp -s "$1/$f" "$2/$f" || return 1; done
  return 0
}

# --help and usage errors
"$BIN" extract --help > "$T/help.txt" 2>&1
check '[ $? -eq 0 ] && grep -q -- "--shard" "$T/help.txt"' "--help"
"$BIN" extract --model "$MODEL" --input "$T/in" > /dev/null 2>&1
check '[ $? -eq 2 ]' "missing --out is a usage error"
"$BIN" extract --model "$MODEL" --input "$T/in" --out "$T/x" --shard 2/2 > "$T/err.txt" 2>&1
check '[ $? -eq 2 ] && grep -q "shard" "$T/err.txt"' "bad --shard"

# 1. full run
$X --input "$T/in" --out "$T/full" 2> "$T/full.err"
check '[ $? -eq 0 ] && [ "$(count "$T/full")" = $N ] && [ -f "$T/full/sub/s4_r2_c2.safetensors" ]' \
  "full run: $(cat "$T/full.err")"
check 'no_temps "$T/full"' "full run left temporary files"
"$BIN" info "$T/full/s2_r0_c0.safetensors" > "$T/info.txt" 2>&1
check 'grep -q "feat.2.3 .*(1, 96, 1, 1)" "$T/info.txt" && grep -q "save_timesteps = \[47, 45, 40\]" "$T/info.txt" && grep -q "save_t = \[21, 61, 161\]" "$T/info.txt"' \
  "feature file layout"

# 2. deterministic: the same run again into another folder is byte-identical
$X --input "$T/in" --out "$T/again" 2>/dev/null
check 'same_tree "$T/full" "$T/again"' "two full runs differ"

# 3. stopped after 2 files by the test hook (SIGTERM to itself), then resumed
SATDIFUSER_TEST_STOP_AFTER=2 $X --input "$T/in" --out "$T/resume" 2> "$T/stop.err"
rc=$?
check '[ $rc -eq 143 ] && [ "$(count "$T/resume")" = 2 ] && no_temps "$T/resume"' \
  "stopped run: exit $rc, $(count "$T/resume") files: $(cat "$T/stop.err")"
$BIN --threads 1 extract --model "$MODEL" --size 64 --bands 3,2,1 --scale clip --input "$T/in" --out "$T/resume" 2> "$T/resume.err"
check '[ $? -eq 0 ] && grep -q "2 written, 2 already done, 0 failed" "$T/resume.err"' "resume: $(cat "$T/resume.err")"
check 'same_tree "$T/full" "$T/resume"' "resumed run differs from the full run"

# 4. a real SIGINT in the middle of a run
$X --input "$T/in" --out "$T/sig" 2> "$T/sig.err" &
pid=$!
i=0
while [ "$(count "$T/sig")" = 0 ] && [ $i -lt 200 ] && kill -0 $pid 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
check '([ $rc -eq 130 ] || [ $rc -eq 0 ]) && no_temps "$T/sig"' "SIGINT: exit $rc, temporary files left"
[ -n "$SATDIFUSER_TEST_VERBOSE" ] && echo "SIGINT run: exit $rc, $(count "$T/sig") files: $(cat "$T/sig.err")"
$X --input "$T/in" --out "$T/sig" 2>/dev/null
check 'same_tree "$T/full" "$T/sig"' "after SIGINT + resume, files differ from the full run"

# 5. two shards together equal one full run
$X --input "$T/in" --out "$T/shards" --shard 0/2 2>/dev/null && $X --input "$T/in" --out "$T/shards" --shard 1/2 2>/dev/null
check '[ $? -eq 0 ] && same_tree "$T/full" "$T/shards"' "two shards differ from the full run"
$X --input "$T/in" --out "$T/shard0" --shard 0/2 2>/dev/null
check '[ "$(count "$T/shard0")" = 2 ]' "shard 0/2 of 4 images should write 2"

# 6. a list file (relative to its folder, comments, blank lines) gives the same names and files
printf '# images\ns2_r0_c1.npy\n\nsub/s4_r2_c2.npy\n' > "$T/in/list.txt"
$X --input "$T/in/list.txt" --out "$T/list" 2>/dev/null
check '[ $? -eq 0 ] && [ "$(count "$T/list")" = 2 ] && cmp -s "$T/list/sub/s4_r2_c2.safetensors" "$T/full/sub/s4_r2_c2.safetensors" && cmp -s "$T/list/s2_r0_c1.safetensors" "$T/full/s2_r0_c1.safetensors"' \
  "list input"

# 7. f16 storage
$X --input "$T/in/s2_r0_c0.npy" --out "$T/f16" --dtype f16 2>/dev/null
"$BIN" info "$T/f16/s2_r0_c0.safetensors" > "$T/f16.txt" 2>&1
check 'grep -q "feat.0.0 .*F16" "$T/f16.txt" && grep -q "dtype = f16" "$T/f16.txt"' "--dtype f16"

# 8. bad inputs
cp -r "$MODEL" "$T/broken_model" && rm "$T/broken_model/vae/diffusion_pytorch_model.safetensors"
$X --model "$T/broken_model" --input "$T/in" --out "$T/b1" 2> "$T/b1.err"
check '[ $? -eq 2 ] && grep -q "broken_model/vae" "$T/b1.err" && [ "$(count "$T/b1" 2>/dev/null || echo 0)" = 0 ]' \
  "missing model part: $(cat "$T/b1.err")"
rm -rf "$T/broken_model/vae" 
$X --model "$T/broken_model" --input "$T/in" --out "$T/b1" 2> "$T/b1.err"
check '[ $? -eq 2 ] && grep -q "vae/config.json" "$T/b1.err"' "missing vae/: $(cat "$T/b1.err")"

mkdir -p "$T/pngs"
cp "$ROOT/tests/data/png_rgb8_filters.png" "$T/pngs/rgb.png"
head -c 60 "$ROOT/tests/data/png_rgb8_filters.png" > "$T/pngs/cut.png"
"$BIN" --threads 1 extract --model "$MODEL" --size 64 --quiet --input "$T/pngs" --out "$T/b2" --bands 4,3,2 2> "$T/b2.err"
check '[ $? -eq 1 ] && grep -q "rgb.png.*3 bands" "$T/b2.err" && grep -q "cut.png" "$T/b2.err" && [ "$(count "$T/b2")" = 0 ] && no_temps "$T/b2"' \
  "too few bands / unreadable PNG: $(cat "$T/b2.err")"
"$BIN" --threads 1 extract --model "$MODEL" --size 64 --quiet --input "$T/pngs" --out "$T/b3" 2> "$T/b3.err"
check '[ $? -eq 1 ] && [ "$(count "$T/b3")" = 1 ] && grep -q "cut.png" "$T/b3.err"' \
  "a bad PNG fails alone, the good one is written: $(cat "$T/b3.err")"

cp -r "$T/full" "$T/corrupt"
head -c 1000 "$T/full/s2_r0_c1.safetensors" > "$T/corrupt/s2_r0_c1.safetensors"
$X --input "$T/in" --out "$T/corrupt" 2> "$T/b4.err"
check '[ $? -eq 1 ] && grep -q "s2_r0_c1.safetensors" "$T/b4.err" && [ "$(wc -c < "$T/corrupt/s2_r0_c1.safetensors")" -eq 1000 ]' \
  "corrupt feature file: $(cat "$T/b4.err")"
$X --input "$T/in" --out "$T/full" --prompt "another prompt" 2> "$T/b5.err"
check '[ $? -eq 1 ] && grep -q "other settings: prompt" "$T/b5.err"' "feature file of other settings: $(cat "$T/b5.err")"
check 'same_tree "$T/full" "$T/again"' "a failed rerun changed the existing files"

check '[ -f "$T/full/.prompt_embedding.safetensors" ]' "the prompt embedding is kept next to the features"

# The same features with 1 and 2 threads (at a size where the GEMMs and norms do split).
X2=$(echo "$X" | sed 's/--threads 1/--threads 2/; s/--size 64/--size 256/')
X1=$(echo "$X" | sed 's/--size 64/--size 256/')
$X1 --input "$T/in/sub/s4_r2_c2.npy" --out "$T/t1" 2> /dev/null
$X2 --input "$T/in/sub/s4_r2_c2.npy" --out "$T/t2" 2> /dev/null
check 'cmp -s "$T/t1/s4_r2_c2.safetensors" "$T/t2/s4_r2_c2.safetensors"' "1 and 2 threads give different features"

# bf16 compute: a bad value is a usage error; where the CPU has AVX512_BF16 the features are
# marked with it, and elsewhere asking for it is a model error (exit 2) naming the reason.
"$BIN" extract --model "$MODEL" --input "$T/in" --out "$T/x" --precision bf17 > "$T/err.txt" 2>&1
check '[ $? -eq 2 ] && grep -q "precision" "$T/err.txt"' "bad --precision"
$X --input "$T/in/sub/s4_r2_c2.npy" --out "$T/bf16" --precision bf16 > /dev/null 2> "$T/bf16.err"; rc=$?
# The binary says whether bf16 runs here ("bf16: yes" in `version`); /proc/cpuinfo would not do:
# under qemu-user it lists the host's flags, not the emulated CPU's.
bf16=$("$BIN" version | sed -n 's/.*bf16: \([a-z]*\).*/\1/p')
check '[ "$bf16" = yes ] || [ "$bf16" = no ]' "satdifuser version names whether bf16 runs ($("$BIN" version))"
# An independent witness where there is one: an x86 binary on the AVX-512 path runs natively (qemu-user
# has no AVX-512), so there /proc/cpuinfo must agree with it.
if "$BIN" version | grep -q "simd: avx512" && [ -r /proc/cpuinfo ]; then
  cpu=no; grep -q avx512_bf16 /proc/cpuinfo && cpu=yes
  check '[ "$bf16" = "$cpu" ]' "the binary says bf16 $bf16, /proc/cpuinfo says $cpu"
fi
if [ "$bf16" = yes ]; then
  check '[ $rc -eq 0 ] && grep -q "compute_precision" "$T/bf16/s4_r2_c2.safetensors"' "--precision bf16 run and marked"
else
  check '[ $rc -eq 2 ] && grep -q "AVX512_BF16" "$T/bf16.err"' "--precision bf16 refused without AVX512_BF16"
fi
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
