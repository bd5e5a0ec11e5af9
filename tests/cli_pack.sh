#!/bin/sh
# CLI test of `satdifuser pack` (issue 20) on the bundled tiny pipeline:
# - extract --model MODEL.sdpack gives the folder's feature tensors and model fingerprint (the files
#   differ only in the "model" path they record), so a cache made from the folder is complete for it;
# - a file packed for another kernel set (--isa generic, avx2 where the CPU has it) loads with a
#   notice and gives the same features; the DiffusionSat .bin layout packs with --unet;
# - truncated, foreign and bad files are refused; --out is not replaced without --force; info reads it.
# Usage: sh tests/cli_pack.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
T=$(mktemp -d /tmp/satdifuser_cli_pack.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_pack: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 2"
PIPE="$ROOT/tests/data/tiny_pipeline"
IMG="$ROOT/tests/data/demo/images/s4_r1_c1.npy"
X="--input $IMG --size 64 --bands 3,2,1 --scale clip"
# tensors and metadata of a feature file but the model path it records
content() { $S info --digest "$1" | tail -n +2 | grep -v ' metadata model = '; }

$S pack --model "$PIPE" --out "$T/tiny.sdpack" > "$T/p1" 2>&1; rc=$?
if grep -q "big-endian" "$T/p1"; then  # refused with its reason on big-endian hosts (s390x under qemu)
  echo "SKIP cli_pack: packed model files are for little-endian machines"; echo "RESULT 0 0"; exit 0
fi
check '[ $rc -eq 0 ] && grep -q "packed for" "$T/p1"' "pack: $(cat "$T/p1")"
$S info "$T/tiny.sdpack" > "$T/i1" 2>&1
check '[ $? -eq 0 ] && grep -q "metadata pack.format = satdifuser-pack/1" "$T/i1" && grep -q "weight.packed " "$T/i1"' "info on a pack"
$S extract --model "$PIPE" $X --out "$T/f_dir" --quiet
$S extract --model "$T/tiny.sdpack" $X --out "$T/f_pack" > "$T/e1" 2>&1
check '[ $? -eq 0 ] && [ "$(content "$T/f_dir/s4_r1_c1.safetensors")" = "$(content "$T/f_pack/s4_r1_c1.safetensors")" ]' \
  "features from the pack differ from the folder's: $(cat "$T/e1")"
check '! grep -q note "$T/e1"' "a pack for this machine was repacked: $(cat "$T/e1")"
# a cache made from the folder is complete for the pack (same fingerprint): nothing recomputed
$S extract --model "$T/tiny.sdpack" $X --out "$T/f_dir" > "$T/e2" 2>&1
check '[ $? -eq 0 ] && grep -q "0 written, 1 already done" "$T/e2"' "the folder's cache is not the pack's: $(cat "$T/e2")"
# another kernel set's layout: loads, says so, same features
$S pack --model "$PIPE" --out "$T/generic.sdpack" --isa generic > /dev/null 2>&1
$S extract --model "$T/generic.sdpack" $X --out "$T/f_gen" > "$T/e3" 2>&1
rc3=$?
# (where the scalar kernels are this machine's own, armhf or SATDIFUSER_ISA=scalar, nothing is repacked)
if $S version | grep -q "simd: scalar"; then note='! grep -q "packed for the" "$T/e3"'; else note='grep -q "packed for the scalar kernels" "$T/e3"'; fi
check '[ $rc3 -eq 0 ] && '"$note"' && [ "$(content "$T/f_dir/s4_r1_c1.safetensors")" = "$(content "$T/f_gen/s4_r1_c1.safetensors")" ]' \
  "a generic pack on this CPU: $(cat "$T/e3")"
# the DiffusionSat layout of .bin files, UNet in checkpoint-150000/unet
DS="$ROOT/tests/data/diffusionsat_tiny"
$S pack --model "$DS" --unet "$DS/checkpoint-150000/unet" --out "$T/ds.sdpack" > "$T/p2" 2>&1
check '[ $? -eq 0 ]' "pack of the DiffusionSat layout: $(cat "$T/p2")"
$S extract --model "$DS" --unet "$DS/checkpoint-150000/unet" $X --out "$T/f_ds" --quiet
$S extract --model "$T/ds.sdpack" $X --out "$T/f_dsp" --quiet
check '[ "$(content "$T/f_ds/s4_r1_c1.safetensors")" = "$(content "$T/f_dsp/s4_r1_c1.safetensors")" ]' "DiffusionSat pack features"
$S extract --model "$T/ds.sdpack" --unet "$DS/checkpoint-150000/unet" $X --out "$T/f_x" > "$T/e4" 2>&1
check '[ $? -eq 2 ] && grep -q "holds its UNet" "$T/e4"' "--unet with a pack: $(cat "$T/e4")"
# bad files
head -c 100000 "$T/tiny.sdpack" > "$T/cut.sdpack"
$S extract --model "$T/cut.sdpack" $X --out "$T/f_cut" > "$T/e5" 2>&1
check '[ $? -eq 2 ] && grep -q "cut.sdpack" "$T/e5" && [ ! -e "$T/f_cut/s4_r1_c1.safetensors" ]' "truncated pack: $(cat "$T/e5")"
$S extract --model "$PIPE/unet/diffusion_pytorch_model.safetensors" $X --out "$T/f_st" > "$T/e6" 2>&1
check '[ $? -eq 2 ] && grep -q "not a packed model file" "$T/e6"' "a weights file as --model: $(cat "$T/e6")"
$S pack --model "$PIPE" --out "$T/tiny.sdpack" > "$T/p3" 2>&1
check '[ $? -eq 2 ] && grep -q -- "--force" "$T/p3"' "pack over an existing file: $(cat "$T/p3")"
$S pack --model "$PIPE" --out "$T/x.sdpack" --isa sparc > "$T/p4" 2>&1
check '[ $? -eq 2 ] && [ ! -e "$T/x.sdpack" ]' "pack --isa sparc: $(cat "$T/p4")"
$S pack --model "$T/tiny.sdpack" --out "$T/y.sdpack" > "$T/p5" 2>&1
check '[ $? -eq 1 ] && grep -q "model folder" "$T/p5"' "pack of a file: $(cat "$T/p5")"
check '[ -z "$(ls "$T" | grep tmp)" ]' "temporary files left: $(ls "$T")"
echo "RESULT $pass $fail"
