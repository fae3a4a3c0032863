#!/usr/bin/env bash
# Runs every built test binary (build/tests/test_*), then prints the totals
# as one line "N passed, M failed".  Exit status 1 if anything failed.
# Usage: tests/run.sh [BUILD_DIR] [WRAPPER...]   (e.g. valgrind as wrapper)
set -u
dir=${1:-build}; shift || true
pass=0; fail=0; bad=0
for t in "$dir"/tests/test_*; do
  [ -x "$t" ] || continue
  case "$t" in *.d|*.o) continue;; esac
  echo "== $t"
  out=$( (cd "$(dirname "$0")/.." && "$@" "$t") 2>&1 ); rc=$?
  echo "$out"
  line=$(echo "$out" | grep -E '^[A-Za-z0-9_./-]+: [0-9]+ passed, [0-9]+ failed' | tail -n 1)
  if [ -z "$line" ]; then
    echo "!! $t printed no summary (exit $rc)"; fail=$((fail+1)); bad=1; continue
  fi
  p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  pass=$((pass+p)); fail=$((fail+f))
  if [ $rc -ne 0 ] && [ "$f" = 0 ]; then echo "!! $t exited $rc"; fail=$((fail+1)); fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ $bad -eq 0 ]
