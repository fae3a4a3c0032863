#!/usr/bin/env bash
# bench/run.sh - bdense vs PyTorch on the docs/spec.md sec. 6 `small` UNet, one command:
#     bench/run.sh                 (from the repository root or anywhere)
# Builds bench/bench_unet.c, then runs every case ROUNDS times, bdense and
# PyTorch interleaved (each case in a fresh process, so peak RSS is the
# case's own), and prints one table of medians and bdense/PyTorch ratios.
# Environment:
#   THREADS=2          compute threads for both (bd context n_threads,
#                      torch.set_num_threads)
#   ROUNDS=3           interleaved rounds per case (the table shows the
#                      median over rounds of each process's median)
#   CASES="train32 train64 pd64 td8 sample1 sample64"
#   TORCH_PYTHON=...   a python with torch (default: the first of
#                      /work/venv-torch/bin/python, python3, /usr/bin/python3
#                      that imports torch)
#   CPUS=0,1           pin both to these CPUs with taskset (optional)
#   CC=cc, CFLAGS=...  compiler (default -O3 -march=native -fopenmp)
#   OUT=build/bench/results.jsonl   raw JSON lines
set -u
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
CASES=${CASES:-"train32 train64 pd64 td8 sample1 sample64"}
CC=${CC:-cc}
OUT=${OUT:-build/bench/results.jsonl}
if [ -z "${TORCH_PYTHON:-}" ]; then
  # the first python that imports torch (Debian's python3-torch lives in
  # /usr/bin/python3, which a pyenv/venv python3 on PATH does not see)
  TORCH_PYTHON=python3
  for p in /work/venv-torch/bin/python python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c "import torch" 2>/dev/null; then TORCH_PYTHON=$p; break; fi
  done
fi
BIN=build/bench/bench_unet
mkdir -p build/bench
flags="-std=c99 -O3 -march=native -I."
blas=""; omp=""
printf '#include <cblas.h>\nint main(void){return 0;}\n' | $CC -x c - -o build/bench/.p -lopenblas >/dev/null 2>&1 && blas="-DBDENSE_USE_CBLAS -lopenblas"
printf 'int main(void){return 0;}\n' | $CC -fopenmp -x c - -o build/bench/.p >/dev/null 2>&1 && omp="-fopenmp"
# shellcheck disable=SC2086
$CC $flags ${CFLAGS:-} $omp bench/bench_unet.c -o $BIN $blas -lm || { echo "build failed"; exit 1; }
pin=""
if [ -n "${CPUS:-}" ] && command -v taskset >/dev/null; then pin="taskset -c $CPUS"; fi
have_torch=1
$TORCH_PYTHON -c "import torch" 2>/dev/null || { have_torch=0; echo "(no torch in $TORCH_PYTHON: bdense only)"; }
echo "bdense bench: threads=$THREADS rounds=$ROUNDS cpus=${CPUS:-any} openmp=${omp:+yes} cblas=${blas:+yes} torch=$TORCH_PYTHON"
: > "$OUT"
# the machine: CPU model, cores, vector units (bdense picks AVX-512, else
# AVX2+FMA, else plain C at run time; Zen 4's AVX-512 runs on 256-bit units)
python3 - >> "$OUT" <<'PYEOF'
import json, os
info = {}
try:
    for line in open("/proc/cpuinfo"):
        k, _, v = line.partition(":")
        k = k.strip()
        if k in ("model name", "cpu family", "model", "flags", "vendor_id") and k not in info:
            info[k] = v.strip()
except OSError:
    pass
flags = set(info.get("flags", "").split())
vec = [u for u, f in (("AVX-512", "avx512f"), ("AVX2", "avx2"), ("FMA", "fma")) if f in flags]
path = "AVX-512" if "avx512f" in flags else ("AVX2+FMA" if {"avx2", "fma"} <= flags else "plain C")
fam = info.get("cpu family", "?")
note = ""
if info.get("vendor_id") == "AuthenticAMD" and fam == "25" and "avx512f" in flags:
    note = " (Zen 4: 512-bit ops on 256-bit units)"
print(json.dumps({"case": "machine", "impl": "-", "cpu": info.get("model name", "unknown"),
                  "family": fam, "model": info.get("model", "?"), "cpus": os.cpu_count(),
                  "vector": "+".join(vec) or "none", "bdense_path": path + note}))
PYEOF
# the machine's GEMM ceiling, measured in the same run
# shellcheck disable=SC2086
OPENBLAS_NUM_THREADS=$THREADS $pin $BIN gemm "$THREADS" >> "$OUT"
for r in $(seq 1 "$ROUNDS"); do
  for c in $CASES; do
    # bdense uses the built-in GEMM in its kernels; OpenBLAS (ceiling only)
    # gets the same thread count
    OPENBLAS_NUM_THREADS=$THREADS $pin $BIN "$c" "$THREADS" >> "$OUT" || echo "bdense $c failed" >&2
    if [ $have_torch = 1 ]; then
      $pin "$TORCH_PYTHON" bench/torch_ref.py "$c" "$THREADS" >> "$OUT" || echo "torch $c failed" >&2
    fi
  done
done
python3 bench/summarize.py "$OUT"
