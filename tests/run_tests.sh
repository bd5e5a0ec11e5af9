#!/bin/sh
# Runs every test program and the golden runner; ends with "N passed, N failed"
# and exits non-zero on any failure. Usage: run_tests.sh SATDIFUSER TEST_BIN...
bin=$1; shift
# Idle OpenMP threads sleep instead of spinning (see src/cli/main.c): on a shared
# 2-core machine spinning threads slow everything down many times.
# A short spin first (~20 us) saves the futex wake-up between back-to-back regions.
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}; export OMP_WAIT_POLICY
GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-2000}; export GOMP_SPINCOUNT
passed=0; failed=0
for t in "$@"; do
  name=$(basename "$t")
  out=$("$t" 2>&1); rc=$?
  res=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
  if [ -z "$res" ]; then
    printf '%s\n' "$out" | tail -n 30
    echo "$name: crashed or printed no RESULT line (exit $rc)"
    failed=$((failed + 1)); continue
  fi
  p=$(echo "$res" | cut -d' ' -f2); f=$(echo "$res" | cut -d' ' -f3)
  printf '%s\n' "$out" | grep -v '^RESULT ' | grep -E '^FAIL|^SKIP|: [0-9]+ passed' 
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && { echo "$name: exit $rc"; f=1; }
  passed=$((passed + p)); failed=$((failed + f))
done
# Golden cases: ours, and the independent ones beside the repository.
dirs="golden"
[ -d ../shared/golden ] && dirs="$dirs ../shared/golden"
gout=$("$bin" golden --allow-unimplemented $dirs 2>&1); grc=$?
printf '%s\n' "$gout" | grep -E '^(PASS|FAIL|NOT IMPLEMENTED|golden:)|FAIL |MISSING|SHAPE|NOT COMPARED|error:'
gsum=$(printf '%s\n' "$gout" | grep '^golden: ' | tail -n 1)
if [ -z "$gsum" ]; then
  echo "golden runner: crashed (exit $grc)"; failed=$((failed + 1))
else
  gp=$(echo "$gsum" | sed 's/golden: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) not implemented/\1/')
  gf=$(echo "$gsum" | sed 's/golden: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) not implemented/\2/')
  gs=$(echo "$gsum" | sed 's/golden: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) not implemented/\3/')
  [ "$gs" -gt 0 ] && echo "($gs golden cases skipped: module not implemented yet)"
  passed=$((passed + gp)); failed=$((failed + gf))
  [ "$grc" -ne 0 ] && [ "$gf" -eq 0 ] && { echo "golden runner: exit $grc"; failed=$((failed + 1)); }
fi
# Every golden case again on the reference path (SATDIFUSER_ISA=reference: the naive loops of
# src/kernels/reference.c, docs/kernels.md) and on the lower SIMD paths this CPU can run (the
# default run above used the best one): SATDIFUSER_ISA forces the GEMM micro-kernels and the
# element-wise kernels. A path the CPU cannot run is refused by the binary: said, not counted.
for isa in reference scalar avx2; do
  if ! SATDIFUSER_ISA=$isa "$bin" version >/dev/null 2>&1; then
    echo "golden on the $isa path: skipped ($(SATDIFUSER_ISA=$isa "$bin" version 2>&1 | head -n 1))"; continue
  fi
  gout=$(SATDIFUSER_ISA=$isa "$bin" golden --allow-unimplemented $dirs 2>&1); grc=$?
  gsum=$(printf '%s\n' "$gout" | grep '^golden: ' | tail -n 1)
  if [ -z "$gsum" ]; then
    printf '%s\n' "$gout" | tail -n 5; echo "golden runner ($isa path): crashed (exit $grc)"; failed=$((failed + 1)); continue
  fi
  printf '%s\n' "$gout" | grep -E '^FAIL'
  gp=$(echo "$gsum" | sed 's/golden: \([0-9]*\) passed.*/\1/')
  gf=$(echo "$gsum" | sed 's/golden: [0-9]* passed, \([0-9]*\) failed.*/\1/')
  echo "golden on the $isa path: $gp passed, $gf failed"
  passed=$((passed + gp)); failed=$((failed + gf))
done
# The CLI test scripts (tests/cli_*.sh), each prints RESULT too.
for s in tests/cli_*.sh; do
  [ -f "$s" ] || continue
  out=$(sh "$s" "$bin" 2>&1); rc=$?
  res=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
  if [ -z "$res" ]; then printf '%s\n' "$out" | tail -n 20; echo "$s: no RESULT line"; failed=$((failed + 1)); continue; fi
  printf '%s\n' "$out" | grep -E '^FAIL'
  p=$(echo "$res" | cut -d' ' -f2); f=$(echo "$res" | cut -d' ' -f3)
  echo "$(basename "$s"): $p passed, $f failed"
  passed=$((passed + p)); failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
