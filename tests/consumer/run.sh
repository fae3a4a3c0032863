#!/usr/bin/env bash
# Installs bdense into temporary prefixes, once with `make install` and once
# with a CMake install, and builds + runs the downstream project in this
# folder against each through CMake (find_package(bdense)) and pkg-config.
# Also vendored with add_subdirectory, and a find_package asking for a
# wrong version must fail.  Then `make uninstall` must leave no file
# behind.  ~15 s.
# Usage: tests/consumer/run.sh [BUILD_DIR]   (BUILD_DIR: where `make` built
# the bdense command, reused by `make install`; default build)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok=0
step() { echo "-- consumer: $*"; }

consume() { # prefix label
  local prefix=$1 label=$2
  step "$label: CMake find_package(bdense)"
  cmake -S tests/consumer -B "$tmp/c-$label" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
  cmake --build "$tmp/c-$label" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
  "$tmp/c-$label/consumer"
  step "$label: pkg-config bdense"
  mkdir -p "$tmp/p-$label"
  PKG_CONFIG_PATH="$prefix/lib/pkgconfig" make -s -f tests/consumer/Makefile O="$tmp/p-$label" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
  "$tmp/p-$label/consumer"
  ok=$((ok+2))
}

step "make install PREFIX=$tmp/make-prefix"
make -s install BUILD="$build" PREFIX="$tmp/make-prefix" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
consume "$tmp/make-prefix" make

step "cmake --install (prefix $tmp/cmake-prefix)"
cmake -S . -B "$tmp/bd-cmake" -DCMAKE_INSTALL_PREFIX="$tmp/cmake-prefix" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
cmake --install "$tmp/bd-cmake" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
consume "$tmp/cmake-prefix" cmake

step "vendored: add_subdirectory(bdense source tree)"
cmake -S tests/consumer -B "$tmp/vendored" -DBDENSE_SOURCE_DIR="$PWD" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
cmake --build "$tmp/vendored" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
"$tmp/vendored/consumer"
ok=$((ok+1))

# The default install is dependency-free; the optional CBLAS flags must
# still reach a consumer when asked for (BLAS=openblas, needs libopenblas-dev).
if grep -q BDENSE_USE_CBLAS "$tmp/make-prefix/lib/pkgconfig/bdense.pc"; then echo "!! default .pc asks for CBLAS"; exit 1; fi
if printf '#include <cblas.h>\nint main(void){return 0;}\n' | cc -x c - -o "$tmp/blasprobe" -lopenblas >/dev/null 2>&1; then
  step "make install BLAS=openblas (optional CBLAS flags): pkg-config bdense"
  make -s install BLAS=openblas BUILD="$build" PREFIX="$tmp/blas" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
  grep -q BDENSE_USE_CBLAS "$tmp/blas/lib/pkgconfig/bdense.pc" || { echo "!! BLAS=openblas .pc lacks CBLAS"; exit 1; }
  mkdir -p "$tmp/p-blas"
  PKG_CONFIG_PATH="$tmp/blas/lib/pkgconfig" make -s -f tests/consumer/Makefile O="$tmp/p-blas" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
  "$tmp/p-blas/consumer"
  ok=$((ok+1))
else
  step "no OpenBLAS here: the BLAS=openblas install is not tested"
fi

step "a version request that must fail: find_package(bdense 9.0)"
mkdir -p "$tmp/v9"
sed 's/find_package(bdense 0.1 REQUIRED)/find_package(bdense 9.0 REQUIRED)/' tests/consumer/CMakeLists.txt > "$tmp/v9/CMakeLists.txt"
cp tests/consumer/*.c "$tmp/v9/"
if cmake -S "$tmp/v9" -B "$tmp/v9/b" -DCMAKE_PREFIX_PATH="$tmp/make-prefix" >"$tmp/log" 2>&1; then
  echo "!! find_package(bdense 9.0) succeeded"; exit 1
fi
grep -q "version" "$tmp/log" || { echo "!! find_package(bdense 9.0) failed for another reason:"; cat "$tmp/log"; exit 1; }
ok=$((ok+1))

step "make uninstall"
make -s uninstall BUILD="$build" PREFIX="$tmp/make-prefix" >/dev/null
left=$(find "$tmp/make-prefix" -type f | wc -l)
if [ "$left" != 0 ]; then echo "!! uninstall left files:"; find "$tmp/make-prefix" -type f; exit 1; fi
ok=$((ok+1))
echo "consumer: $ok passed, 0 failed"
