#!/usr/bin/env bash
# tests/web/run.sh - the browser demo's test (docs/web.md).
#   1. web/bdense_web.c built natively under ASan + UBSan
#      (tests/web/test_web_native.c: the C API and the array layouts);
#   2. `make web` (Emscripten);
#   3. web/build/index.html?test=1 in headless Chromium: the page trains a
#      small teacher (300 steps) and both students (120 steps), then writes
#      "TEST done key=value ..." into the DOM, which --dump-dom returns.
#      Checks: the run finished; the teacher's and both students' losses
#      fell; both students' trajectory error is under a tenth of the
#      teacher's own DDIM error at the same NFE; the canvas changed.
# Needs cc, emcc (apt-get install emscripten) and chromium.  Prints
# "web: N passed, M failed"; exit 1 on any failure.
# Usage: tests/web/run.sh   (WEB_SKIP_BUILD=1: use the existing web/build)
set -u
cd "$(dirname "$0")/../.."
pass=0; fail=0
ok()  { echo "PASS $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
finish() { echo "web: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
build=${WEB_BUILD:-web/build}
mkdir -p "$build"

# 1. the C side, natively
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
if ${CC:-cc} -std=c99 -O1 -g -Wall -Wextra -Wpedantic -Werror $san \
     -o "$build/test_web_native" tests/web/test_web_native.c -lm &&
   "$build/test_web_native"; then
  ok "native C API (ASan+UBSan)"
else
  bad "native C API (ASan+UBSan)"
fi

# 2. the WebAssembly build
if [ "${WEB_SKIP_BUILD:-0}" != 1 ]; then
  if ! command -v "${EMCC:-emcc}" >/dev/null 2>&1; then
    bad "make web: emcc not found (apt-get install emscripten)"; finish
  fi
  if make --no-print-directory web WEB_BUILD="$build"; then ok "make web"; else bad "make web"; finish; fi
fi
for f in index.html demo.js bdense_web.js; do
  [ -s "$build/$f" ] || { bad "$build/$f missing"; finish; }
done

# 3. the page in headless Chromium
chrome=""
for c in ${CHROMIUM:-} chromium chromium-browser google-chrome; do
  if command -v "$c" >/dev/null 2>&1; then chrome=$c; break; fi
done
[ -n "$chrome" ] || { bad "no chromium (apt-get install chromium)"; finish; }
page="file://$(cd "$build" && pwd)/index.html?test=1"
dom=$(timeout 110 "$chrome" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
        --user-data-dir="$(mktemp -d)" --virtual-time-budget=600000 --dump-dom "$page" 2>/dev/null)
line=$(printf '%s\n' "$dom" | grep -o 'TEST [a-z]*[^<]*' | head -n 1)
echo "page: ${line:-<no TEST line>}"
case "$line" in
  "TEST done "*) ok "page ran to the end" ;;
  *) bad "page ran to the end"
     printf '%s\n' "$dom" | grep -o '<div id="status">[^<]*' | sed 's/^/status: /'; finish ;;
esac
val() { printf '%s\n' "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# check NAME AWK-CONDITION (on the page's numbers)
check() {
  local name=$1 cond=$2 v expr=$2 k
  for k in teacher_steps distill_steps teacher_loss0 teacher_loss1 sparse_loss0 sparse_loss1 \
           bdense_loss0 bdense_loss1 ddim_mse sparse_mse bdense_mse; do
    v=$(val "$k"); [ -n "$v" ] || v=nan
    expr=$(printf '%s' "$expr" | sed "s/\b$k\b/($v)/g")
  done
  if awk "BEGIN { exit !($expr) }" 2>/dev/null; then ok "$name"; else bad "$name ($cond -> $expr)"; fi
}
check "teacher trained 300 steps, students 120" "teacher_steps == 300 && distill_steps == 120"
check "teacher loss fell" "teacher_loss1 < teacher_loss0"
check "sparse student's loss fell 5x" "sparse_loss1 < sparse_loss0 / 5"
check "B-DENSE student's loss fell 5x" "bdense_loss1 < bdense_loss0 / 5"
check "students beat the teacher's DDIM 10x" "sparse_mse < ddim_mse / 10 && bdense_mse < ddim_mse / 10 && ddim_mse > 0"
h0=$(val hash0); h1=$(val hash1)
if [ -n "$h0" ] && [ -n "$h1" ] && [ "$h0" != "$h1" ]; then ok "canvas changed ($h0 -> $h1)"; else bad "canvas changed"; fi
finish
