#!/bin/sh
# A cross build's test suite under qemu-user (make test-arm64 / test-armhf / test-s390x):
# every unit test program, every golden case on each ISA path the target has, the CLI scripts.
# Ends with "N passed, N failed" like run_tests.sh and exits non-zero on any failure.
# Usage: run_cross.sh ARCH "QEMU ARGS" "ISAS" SATDIFUSER TEST_BIN...
#   e.g. run_cross.sh arm64 "qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu" "neon scalar" build-arm64/satdifuser ...
# tests/cross_slow.txt lists, per ARCH, what is too slow under qemu (with the reason): a golden case
# there runs on the first ISA path only, a test program or CLI script is not run; unless CROSS_FULL=1.
# Each is printed as SLOW with its reason, never dropped silently. CROSS_SKIP_UNIT=1,
# CROSS_SKIP_GOLDEN=1 and CROSS_SKIP_CLI=1 leave out the unit test programs, the golden cases and the
# CLI scripts (printed too): to rerun one part after a change.
# Threads: SATDIFUSER_THREADS=1 unless set (the build machine is shared; results do not
# depend on the thread count, which the native suite checks).
arch=$1; qemu=$2; isas=$3; bin=$4; shift 4
root=$(pwd)
command -v ${qemu%% *} > /dev/null 2>&1 || { echo "run_cross.sh: ${qemu%% *} not found (apt-get install qemu-user)"; exit 2; }
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}; export OMP_WAIT_POLICY
GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-2000}; export GOMP_SPINCOUNT
SATDIFUSER_THREADS=${SATDIFUSER_THREADS:-1}; export SATDIFUSER_THREADS
# the CLI scripts that wait for a running command (cli_runs.sh) wait this many times longer
SATDIFUSER_TEST_TIME_SCALE=${SATDIFUSER_TEST_TIME_SCALE:-20}; export SATDIFUSER_TEST_TIME_SCALE
# The CLI scripts call "$BIN ..." directly: a wrapper runs the binary under qemu.
wrap="$root/$(dirname "$bin")/satdifuser-qemu"
printf '#!/bin/sh\nexec %s "%s" "$@"\n' "$qemu" "$root/$bin" > "$wrap" && chmod +x "$wrap"
# tests/cli_embed.sh runs the library examples from $SATDIFUSER_EXAMPLES: wrappers for the cross-built ones.
exdir="$root/$(dirname "$bin")/examples-qemu"
mkdir -p "$exdir"
for e in "$root/$(dirname "$bin")"/examples/*; do
  [ -x "$e" ] && printf '#!/bin/sh\nexec %s "%s" "$@"\n' "$qemu" "$e" > "$exdir/$(basename "$e")" && chmod +x "$exdir/$(basename "$e")"
done
SATDIFUSER_EXAMPLES=$exdir; export SATDIFUSER_EXAMPLES
echo "== $arch: $("$wrap" version)"
passed=0; failed=0
t_start=$(date +%s)
# slow_reason NAME: the reason tests/cross_slow.txt gives for NAME on this arch (empty: not listed)
slow_reason() {
  [ "${CROSS_FULL:-0}" = 1 ] && return
  awk -v a="$arch" -v n="$1" '$1 == a && $2 == n { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }' tests/cross_slow.txt 2>/dev/null
}

[ "${CROSS_SKIP_UNIT:-0}" = 1 ] && { echo "unit test programs not run (CROSS_SKIP_UNIT=1): $# programs"; shift $#; }
for t in "$@"; do
  name=$(basename "$t")
  why=$(slow_reason "$name")
  if [ -n "$why" ]; then echo "SLOW (not run, tests/cross_slow.txt): $name: $why"; continue; fi
  t0=$(date +%s)
  out=$($qemu "$t" 2>&1); rc=$?
  res=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
  if [ -z "$res" ]; then
    printf '%s\n' "$out" | tail -n 30
    echo "$name: crashed or printed no RESULT line (exit $rc)"
    failed=$((failed + 1)); continue
  fi
  p=$(echo "$res" | cut -d' ' -f2); f=$(echo "$res" | cut -d' ' -f3)
  printf '%s\n' "$out" | grep -v '^RESULT ' | grep -E '^FAIL|^SKIP'
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && { echo "$name: exit $rc"; f=1; }
  echo "$name: $p passed, $f failed ($(( $(date +%s) - t0 )) s)"
  passed=$((passed + p)); failed=$((failed + f))
done

# Golden cases: ours and the independent ones beside the repository, on each ISA path.
dirs="golden"
[ -d ../shared/golden ] && dirs="$dirs ../shared/golden"
first=1
[ "${CROSS_SKIP_GOLDEN:-0}" = 1 ] && { echo "golden cases not run (CROSS_SKIP_GOLDEN=1) on the paths: $isas"; isas=""; }
for isa in $isas; do
  t0=$(date +%s)
  gp=0; gf=0
  for d in $dirs; do
    for c in $(find "$d" -name case.json | sort); do
      case_dir=$(dirname "$c")
      why=""
      [ $first -eq 0 ] && why=$(slow_reason "$case_dir")
      if [ -n "$why" ]; then echo "SLOW (not run on the $isa path, tests/cross_slow.txt): $case_dir: $why"; continue; fi
      gout=$(SATDIFUSER_ISA=$isa "$wrap" golden "$case_dir" 2>&1); grc=$?
      gsum=$(printf '%s\n' "$gout" | grep '^golden: ' | tail -n 1)
      if [ -z "$gsum" ]; then
        printf '%s\n' "$gout" | tail -n 5; echo "FAIL $case_dir ($isa path): crashed (exit $grc)"; gf=$((gf + 1)); continue
      fi
      if [ "$gsum" = "golden: 1 passed, 0 failed, 0 not implemented" ] && [ $grc -eq 0 ]; then
        gp=$((gp + 1))
        [ "${CROSS_VERBOSE:-0}" = 1 ] && printf '%s\n' "$gout" | grep -E '^PASS|ok '
      else
        printf '%s\n' "$gout" | grep -E '^FAIL|FAIL |MISSING|SHAPE|NOT COMPARED|error:|NOT IMPL'
        echo "FAIL $case_dir ($isa path, exit $grc)"; gf=$((gf + 1))
      fi
    done
  done
  echo "golden on the $isa path: $gp passed, $gf failed ($(( $(date +%s) - t0 )) s)"
  passed=$((passed + gp)); failed=$((failed + gf))
  first=0
done

# The CLI test scripts (tests/cli_*.sh) with the wrapped binary.
[ "${CROSS_SKIP_CLI:-0}" = 1 ] && echo "CLI scripts not run (CROSS_SKIP_CLI=1): $(ls tests/cli_*.sh | wc -l) scripts"
for s in tests/cli_*.sh; do
  [ -f "$s" ] && [ "${CROSS_SKIP_CLI:-0}" != 1 ] || continue
  why=$(slow_reason "$(basename "$s")")
  if [ -n "$why" ]; then echo "SLOW (not run, tests/cross_slow.txt): $s: $why"; continue; fi
  t0=$(date +%s)
  out=$(sh "$s" "$wrap" 2>&1); rc=$?
  res=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
  if [ -z "$res" ]; then printf '%s\n' "$out" | tail -n 20; echo "$s: no RESULT line"; failed=$((failed + 1)); continue; fi
  printf '%s\n' "$out" | grep -E '^FAIL|^SKIP'
  p=$(echo "$res" | cut -d' ' -f2); f=$(echo "$res" | cut -d' ' -f3)
  echo "$(basename "$s"): $p passed, $f failed ($(( $(date +%s) - t0 )) s)"
  passed=$((passed + p)); failed=$((failed + f))
done
echo "$arch: $passed passed, $failed failed ($(( $(date +%s) - t_start )) s under qemu)"
[ "$failed" -eq 0 ]
