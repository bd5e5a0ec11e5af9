#!/bin/sh
# Issue 17: the library reads no environment; the command does (src/cli/main.c, cmd_reproduce.c) and
# passes the values in. Its behaviour is the one it had when the library read them:
#   SATDIFUSER_THREADS  the thread count (an invalid value is an error; --threads wins);
#   SATDIFUSER_ISA      the SIMD path (reference, scalar, a lower path; an unknown value or a path this
#                       CPU cannot run is an error naming the accepted ones);
#   SATDIFUSER_CONFIGS  a folder whose tasks/ holds reproduce's presets, searched first.
# Usage: sh tests/cli_env.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
T=$(mktemp -d /tmp/satdifuser_cli_env.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_env: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
unset SATDIFUSER_ISA SATDIFUSER_CONFIGS

# threads
SATDIFUSER_THREADS=3 "$BIN" version > "$T/v" 2>&1
check '[ $? -eq 0 ] && grep -q "threads: 3)" "$T/v"' "SATDIFUSER_THREADS=3: $(cat "$T/v")"
SATDIFUSER_THREADS=3 "$BIN" --threads 1 version > "$T/v" 2>&1
check '[ $? -eq 0 ] && grep -q "threads: 1)" "$T/v"' "--threads beats SATDIFUSER_THREADS: $(cat "$T/v")"
SATDIFUSER_THREADS=abc "$BIN" version > "$T/v" 2>&1
check '[ $? -eq 2 ] && [ "$(cat "$T/v")" = "satdifuser: SATDIFUSER_THREADS='"'abc'"': expected a whole number from 1 to 4096" ]' \
  "SATDIFUSER_THREADS=abc: $(cat "$T/v")"

# the SIMD path: the best one unset, reference and scalar everywhere
best=$(env -u SATDIFUSER_THREADS "$BIN" version | sed -n 's/.*simd: \([a-z0-9]*\),.*/\1/p')
check '[ -n "$best" ]' "version names the path: $("$BIN" version)"
for isa in reference scalar; do
  SATDIFUSER_ISA=$isa "$BIN" version > "$T/v" 2>&1
  check '[ $? -eq 0 ] && grep -q "simd: $isa," "$T/v"' "SATDIFUSER_ISA=$isa: $(cat "$T/v")"
done
case "$best" in avx512) accepted="reference, scalar, avx2, avx512" ;; avx2) accepted="reference, scalar, avx2" ;;
  neon) accepted="reference, scalar, neon" ;; *) accepted="reference, scalar" ;; esac
SATDIFUSER_ISA=avx3 "$BIN" version > "$T/v" 2>&1
check '[ $? -eq 2 ] && [ "$(cat "$T/v")" = "satdifuser: SATDIFUSER_ISA='"'avx3'"': unknown value; accepted here: $accepted (unset: the best, $best)" ]' \
  "SATDIFUSER_ISA=avx3: $(cat "$T/v")"
other=neon; [ "$best" = neon ] && other=avx2
SATDIFUSER_ISA=$other "$BIN" version > "$T/v" 2>&1
check '[ $? -eq 2 ] && grep -qF "SATDIFUSER_ISA='"'$other'"': this CPU cannot run that path; accepted here: $accepted" "$T/v"' \
  "SATDIFUSER_ISA=$other on a $best CPU: $(cat "$T/v")"
SATDIFUSER_ISA=avx3 "$BIN" extract --help > "$T/v" 2>&1
check '[ $? -eq 2 ] && grep -q "unknown value" "$T/v"' "the path is checked before any command: $(head -2 "$T/v")"

# reproduce's presets: $SATDIFUSER_CONFIGS/tasks first
mkdir -p "$T/cfg/tasks"
cp configs/tasks/m-eurosat.json "$T/cfg/tasks/m-mine.json"
SATDIFUSER_CONFIGS="$T/cfg" "$BIN" reproduce --geobench "$T/gb" --model tests/data/tiny_pipeline --task m-mine \
  --out "$T/run" --dry-run > "$T/r" 2>&1
check '[ $? -eq 0 ] && grep -q "preset $T/cfg/tasks/m-mine.json" "$T/r" && [ ! -e "$T/run" ]' \
  "a preset of \$SATDIFUSER_CONFIGS/tasks: $(head -3 "$T/r")"
"$BIN" reproduce --geobench "$T/gb" --model tests/data/tiny_pipeline --task m-mine --out "$T/run" --dry-run > "$T/r" 2>&1
check '[ $? -eq 2 ] && grep -q "no preset m-mine.json" "$T/r"' "without it the preset is not found: $(cat "$T/r")"
SATDIFUSER_CONFIGS="$T/cfg" "$BIN" reproduce --geobench "$T/gb" --model tests/data/tiny_pipeline --task m-eurosat \
  --out "$T/run" --dry-run > "$T/r" 2>&1
check '[ $? -eq 0 ] && grep -q "preset .*configs/tasks/m-eurosat.json" "$T/r"' \
  "the other folders are still searched: $(head -3 "$T/r")"

echo "RESULT $pass $fail"
