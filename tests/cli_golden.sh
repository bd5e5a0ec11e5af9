#!/bin/sh
# The golden runner's exit status when it finds nothing to compare: a folder under which no
# case ran is a failure (exit 1) unless --allow-empty, a missing folder a usage error (exit 2).
# A run that "passes" with 0 cases was how a 32-bit build hid a readdir failure.
# Usage: sh tests/cli_golden.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
T=$(mktemp -d /tmp/satdifuser_cli_golden.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
check() { if eval "$1"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL cli_golden: $2"; fi; }
mkdir -p "$T/empty/sub"
"$BIN" golden "$T/empty" > "$T/out" 2>&1
check '[ $? -eq 1 ] && grep -q "no case that ran" "$T/out"' "an empty folder must fail"
"$BIN" golden --allow-empty "$T/empty" > "$T/out" 2>&1
check '[ $? -eq 0 ]' "--allow-empty accepts an empty folder"
"$BIN" golden "$T/missing" > "$T/out" 2>&1
check '[ $? -eq 2 ] && grep -q "missing" "$T/out"' "a missing folder is an error naming it"
# one real case beside an empty folder: still a failure (the empty one is named)
"$BIN" golden golden/resize_up_square "$T/empty" > "$T/out" 2>&1
check '[ $? -eq 1 ] && grep -q "^EMPTY  $T/empty" "$T/out" && grep -q "^golden: 1 passed" "$T/out"' "a case and an empty folder"
"$BIN" golden --only no_such_case_name golden/resize_up_square > "$T/out" 2>&1
check '[ $? -eq 1 ]' "--only matching no case must fail"
"$BIN" golden golden/resize_up_square > "$T/out" 2>&1
check '[ $? -eq 0 ]' "one passing case"
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
