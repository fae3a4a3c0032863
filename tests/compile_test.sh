#!/usr/bin/env bash
# Compiles bdense.h in every supported way with -Werror; prints one line per
# configuration and exits nonzero on the first failure.
set -u
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$(dirname "$0")/.."
printf '#define BDENSE_IMPLEMENTATION\n#include "bdense.h"\nint main(void){bd_context*c;bd_context_config cc=bd_context_config_init();if(bd_context_init(&cc,&c))return 1;bd_context_free(c);return 0;}\n' > "$tmp/impl.c"
cp "$tmp/impl.c" "$tmp/impl.cpp"
printf '#include "bdense.h"\nint other(void){return (int)bd_result_string(BD_SUCCESS)[0];}\n' > "$tmp/user.c"
printf '#define BDENSE_STATIC\n#define BDENSE_IMPLEMENTATION\n#include "bdense.h"\nint tu2(void){return (int)bd_result_string(BD_SUCCESS)[0];}\n' > "$tmp/static2.c"
printf '#define BDENSE_STATIC\n#define BDENSE_IMPLEMENTATION\n#include "bdense.h"\nint tu2(void);\nint main(void){return tu2()==0;}\n' > "$tmp/static1.c"
have_blas=0
printf '#include <cblas.h>\nint main(void){return 0;}\n' | cc -x c - -o "$tmp/p" -lopenblas >/dev/null 2>&1 && have_blas=1
ok=0; bad=0
run() { # name, command...
  local name=$1; shift
  if out=$("$@" 2>&1); then echo "PASS compile $name"; ok=$((ok+1)); else echo "FAIL compile $name"; echo "$out" | head -20; bad=$((bad+1)); fi
}
W="-Wall -Wextra -Wpedantic -Werror -I."
for cc in gcc clang; do
  command -v $cc >/dev/null || continue
  cxx=g++; [ $cc = clang ] && cxx=clang++
  run "$cc-c99" $cc -std=c99 $W -o "$tmp/a" "$tmp/impl.c" "$tmp/user.c" -lm
  run "$cxx-c++11" $cxx -std=c++11 $W -o "$tmp/b" "$tmp/impl.cpp" -lm
  run "$cc-static-2tu" $cc -std=c99 $W -o "$tmp/c" "$tmp/static1.c" "$tmp/static2.c" -lm
  if [ $have_blas = 1 ]; then
    run "$cc-c99-cblas" $cc -std=c99 $W -DBDENSE_USE_CBLAS -o "$tmp/d" "$tmp/impl.c" -lopenblas -lm
    run "$cxx-cblas" $cxx -std=c++11 $W -DBDENSE_USE_CBLAS -o "$tmp/e" "$tmp/impl.cpp" -lopenblas -lm
    run "$cc-bench-gemm_blas" $cc -std=c99 $W -DBDENSE_USE_CBLAS -o "$tmp/g" bench/gemm_blas.c -lopenblas -lm
  fi
done
# The reference kernels (bd__*_ref) are test-only: a build without
# BDENSE_REFERENCE_KERNELS must not contain them.  gcc -O0 keeps unused static
# functions, so the positive control (with the macro) shows the check can fail.
refs() { nm "$1" 2>/dev/null | grep -c '_ref$'; }
if command -v gcc >/dev/null && command -v nm >/dev/null; then
  printf '#define BDENSE_IMPLEMENTATION\n#include "bdense.h"\n' > "$tmp/ref.c"
  if gcc -std=c99 -O0 $W -c "$tmp/ref.c" -o "$tmp/noref.o" &&
     gcc -std=c99 -O0 $W -DBDENSE_REFERENCE_KERNELS -c "$tmp/ref.c" -o "$tmp/withref.o" &&
     [ "$(refs "$tmp/noref.o")" -eq 0 ] && [ "$(refs "$tmp/withref.o")" -gt 0 ]; then
    echo "PASS compile no-reference-kernels (nm: 0 *_ref symbols; $(refs "$tmp/withref.o") with BDENSE_REFERENCE_KERNELS)"; ok=$((ok+1))
  else
    echo "FAIL compile no-reference-kernels: *_ref symbols without BDENSE_REFERENCE_KERNELS:"
    nm "$tmp/noref.o" 2>/dev/null | grep '_ref$' | head; bad=$((bad+1))
  fi
fi
echo "compile_test: $ok passed, $bad failed"
[ $bad -eq 0 ]
