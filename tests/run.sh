#!/usr/bin/env bash
# Runs every built test binary (build/tests/test_*), then prints the totals
# as one line "N passed, M failed".  Exit status 1 if anything failed.
# Usage: tests/run.sh [BUILD_DIR] [WRAPPER...]   (e.g. valgrind as wrapper)
# Environment:
#   TEST_JOBS   binaries run at the same time (default: the number of CPUs,
#               at most 2).  Each binary's output is printed whole, in the
#               usual order, once it has finished.  The tests write only
#               names of their own (mkdtemp, the pid, or the test's name).
#   TEST_QUICK_ONLY  space-separated binary names (test_cli test_eval ...)
#               run with TEST_QUICK=1: the CI's second and third passes
#               shrink the tests whose code does not depend on the pass
#               (docs/reliability.md "CI").  TEST_QUICK=1 in the environment
#               still applies to every binary.
#   TEST_FIRST  binaries started first (the slow ones, so that the two
#               slots end together); the output keeps the usual order.
#   OMP_WAIT_POLICY  defaults to passive here: spinning OpenMP workers of two
#               binaries on two cores (or under valgrind) starve each other.
set -u
dir=${1:-build}; shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
jobs=${TEST_JOBS:-}
if [ -z "$jobs" ]; then
  jobs=$(nproc 2>/dev/null || echo 1)
  [ "$jobs" -gt 2 ] && jobs=2
fi
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
quick_only=" ${TEST_QUICK_ONLY:-} "
out_dir=$(mktemp -d /tmp/bdense_run_XXXXXX) || exit 1
trap 'rm -rf "$out_dir"' EXIT

tests=()
for t in "$dir"/tests/test_*; do
  [ -x "$t" ] || continue
  case "$t" in *.d|*.o) continue;; esac
  tests+=("$t")
done

# one binary, from the repository root: output to $out_dir/<i>.out, exit
# status to $out_dir/<i>.rc (written last)
run_one() {
  local i=$1 t=$2 q= t0 rc; shift 2
  case "$quick_only" in *" $(basename "$t") "*) q=1;; esac
  t0=$(date +%s)
  (cd "$root" && if [ -n "$q" ]; then TEST_QUICK=1 "$@" "$t"; else "$@" "$t"; fi) > "$out_dir/$i.out" 2>&1
  rc=$?
  echo $(( $(date +%s) - t0 )) > "$out_dir/$i.secs"
  echo $rc > "$out_dir/$i.rc.tmp" && mv "$out_dir/$i.rc.tmp" "$out_dir/$i.rc"
}

pass=0; fail=0; bad=0
# prints binary i's output and adds up its summary line (it has finished)
collect() {
  local i=$1 t=${tests[$1]} rc out line p f
  rc=$(cat "$out_dir/$i.rc")
  out=$(cat "$out_dir/$i.out")
  echo "== $t ($(cat "$out_dir/$i.secs") s${TEST_QUICK:+, TEST_QUICK}$(case "$quick_only" in *" $(basename "$t") "*) [ -z "${TEST_QUICK:-}" ] && echo ", TEST_QUICK";; esac))"
  echo "$out"
  line=$(echo "$out" | grep -E '^[A-Za-z0-9_./-]+: [0-9]+ passed, [0-9]+ failed' | tail -n 1)
  if [ -z "$line" ]; then
    echo "!! $t printed no summary (exit $rc)"; fail=$((fail+1)); bad=1; return
  fi
  p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  pass=$((pass+p)); fail=$((fail+f))
  if [ "$rc" -ne 0 ] && [ "$f" = 0 ]; then echo "!! $t exited $rc"; fail=$((fail+1)); fi
}

# start order: TEST_FIRST's binaries, then the others
first=" ${TEST_FIRST-test_unet test_cli test_eval test_faults test_distill test_kernels_fast test_backend} "
order=()
for ((k = 0; k < ${#tests[@]}; k++)); do
  case "$first" in *" $(basename "${tests[$k]}") "*) order+=("$k");; esac
done
for ((k = 0; k < ${#tests[@]}; k++)); do
  case "$first" in *" $(basename "${tests[$k]}") "*) ;; *) order+=("$k");; esac
done

# start the binaries, at most $jobs running at once; print each one's output
# whole, in the usual order, as soon as it and those before it are done
next=0; shown=0; n=${#tests[@]}
while [ $shown -lt $n ]; do
  running=0
  for ((k = 0; k < next; k++)); do [ -f "$out_dir/${order[$k]}.rc" ] || running=$((running+1)); done
  if [ $next -lt $n ] && [ $running -lt "$jobs" ]; then
    run_one "${order[$next]}" "${tests[${order[$next]}]}" "$@" &
    next=$((next+1))
    continue
  fi
  if [ -f "$out_dir/$shown.rc" ]; then
    collect $shown; shown=$((shown+1))
  else
    sleep 0.1
  fi
done
wait
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ $bad -eq 0 ]
