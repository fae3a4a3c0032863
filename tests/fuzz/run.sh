#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined)
# and runs each for a bounded time on a scratch copy of its committed seed
# corpus.  Prints the executions reached per target; exits 1 if any target
# found a crash (the input is kept in build/fuzz/artifacts/<target>/ -- copy
# it to tests/fuzz/regress/<target>/ once fixed; test_io replays it, test_cli
# replays regress/cli).
# Usage: tests/fuzz/run.sh [seconds per target, default 60] [targets...]
#   Long campaign: tests/fuzz/run.sh 3600 safetensors   (or run the binary
#   build/fuzz/fuzz_safetensors directly with -jobs=N -workers=N CORPUS_DIR)
set -u
cd "$(dirname "$0")/../.."
secs=${1:-60}; shift || true
targets=${*:-"safetensors npy idx json checkpoint cli"}
CC=${FUZZ_CC:-clang}
out=build/fuzz
mkdir -p "$out"
status=0
for t in $targets; do
  src=tests/fuzz/fuzz_$t.c
  bin=$out/fuzz_$t
  if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ] || [ bdense.h -nt "$bin" ] ||
     [ -n "$(find cli -name '*.[ch]' -newer "$bin" 2>/dev/null)" ]; then
    $CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I. \
        -o "$bin" "$src" -lm || { echo "fuzz_$t: build failed"; status=1; continue; }
  fi
  work=$out/work/$t; art=$out/artifacts/$t/
  mkdir -p "$work" "$art"
  cp -n tests/fuzz/corpus/$t/* "$work"/ 2>/dev/null
  dict=""; [ -f tests/fuzz/$t.dict ] && dict="-dict=tests/fuzz/$t.dict"
  quiet=""; [ "$t" = cli ] && quiet="-close_fd_mask=3" # the CLI's messages (libFuzzer's own output stays)
  log=$out/fuzz_$t.log
  nice -n 10 "$bin" "$work" $dict $quiet -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
      -timeout=10 -print_final_stats=1 -artifact_prefix="$art" >"$log" 2>&1
  rc=$?
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  echo "fuzz_$t: ${execs:-?} executions in ${secs}s, exit $rc"
  if [ $rc -ne 0 ]; then status=1; grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5; fi
done
exit $status
