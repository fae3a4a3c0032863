#!/usr/bin/env bash
# tests/cuda/run_all.sh - the whole CUDA check in one command, for a machine
# with an NVIDIA GPU, nvcc and (optionally) PyTorch:
#   1. builds bdense_cuda.cu (nvcc, sm_80 + sm_90), tests/cuda/test_cuda,
#      tests/cuda/test_cuda_unet and bench/cuda_bench  (make CUDA=1 cuda)
#   2. runs both test programs (every op, then the UNet, a training step and
#      sampling runs, CUDA against the CPU path)
#   3. benchmarks the `small` UNet (docs/spec.md sec. 6): training step at batch 128 and
#      batch-1 network-call latency, bdense vs PyTorch eager CUDA on the same
#      model (bench/cuda_torch_ref.py), float32 and TF32
#   4. the command line on the GPU: bdense train --device cuda on the
#      built-in shapes, then bdense sample --device cuda and on the CPU from
#      that checkpoint with the same noise (the samples must agree), then
#      B-DENSE distillations (bdense distill --device cuda, TD with the
#      teacher solving on the GPU, and PD) against the same runs on the CPU
#      (losses and the students' samples must agree)
#   5. prints one table (median ms, ratio) and writes it with all logs to
#      $BUILD/cuda-report/ (and, when $OUT is set, table.md and
#      cuda-report.tgz to $OUT/)
# Without a GPU (or without nvcc) it says "no GPU, skipped" and exits 0.
# Exit 1 when a build or a test fails, or a GPU is visible but unusable.
# Usage: tests/cuda/run_all.sh            (from anywhere; ~2-4 minutes)
#   env: BUILD (build-cuda), NVCC, PYTHON (python3), BATCH (128), ITERS (30),
#        BENCH_ARGS (extra cuda_bench arguments), SKIP_BUILD=1 (use the
#        binaries already in $BUILD, e.g. the host-emulator ones),
#        TEST_TIMEOUT (600 s per test program), BENCH_TIMEOUT (300 s per run)
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build-cuda}
BATCH=${BATCH:-128}
ITERS=${ITERS:-30}
PYTHON=${PYTHON:-python3}
TEST_TIMEOUT=${TEST_TIMEOUT:-600}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-300}
REP=$BUILD/cuda-report
mkdir -p "$REP"
T0=$(date +%s)
say() { echo "[run_all $(( $(date +%s) - T0 ))s] $*"; }

# ---- nvcc -------------------------------------------------------------------
if [ -z "${NVCC:-}" ]; then
  NVCC=$(command -v nvcc 2>/dev/null || true)
  [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
  if [ -z "$NVCC" ]; then
    for c in /usr/local/cuda-*/bin/nvcc; do [ -x "$c" ] && NVCC=$c; done
  fi
fi
GPU_INFO=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
if [ -z "${NVCC:-}" ] || [ ! -x "$NVCC" ]; then
  if [ -n "$GPU_INFO" ]; then echo "run_all: a GPU is visible ($GPU_INFO) but nvcc was not found (set NVCC)"; exit 1; fi
  echo "no GPU, skipped (no nvcc)"; exit 0
fi
NVCC_VER=$("$NVCC" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p' | head -n 1)
say "nvcc $NVCC (CUDA $NVCC_VER); GPU: ${GPU_INFO:-none visible to nvidia-smi}"

# ---- build ------------------------------------------------------------------
JOBS=$(nproc 2>/dev/null || echo 4)
say "building (make CUDA=1 BUILD=$BUILD cuda)"
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  say "SKIP_BUILD=1: using the binaries in $BUILD"
elif ! timeout 600 make -j"$JOBS" CUDA=1 BUILD="$BUILD" NVCC="$NVCC" cuda >"$REP/build.log" 2>&1; then
  tail -n 40 "$REP/build.log"
  echo "run_all: BUILD FAILED (log: $REP/build.log)"; exit 1
fi
say "build ok"

# ---- tests ------------------------------------------------------------------
run_test() { # name -> sets ${name}_line and ${name}_rc
  local name=$1 out rc
  out=$(timeout "$TEST_TIMEOUT" "$BUILD/tests/$name" 2>&1); rc=$?
  echo "$out" >"$REP/$name.log"
  echo "$out" | grep -E '^(PASS|FAIL|  FAIL)|worst|skipped' | sed 's/^/    /'
  printf -v "${name}_rc" '%s' "$rc"
  printf -v "${name}_line" '%s' "$(echo "$out" | grep -E "^$name: [0-9]+ passed" | tail -n 1)"
  printf -v "${name}_worst" '%s' "$(echo "$out" | sed -n 's/.*worst nmse\/tol over all checks = \([^ ]*\).*/\1/p' | tail -n 1)"
  if echo "$out" | grep -q "no GPU, skipped"; then
    if [ -n "$GPU_INFO" ]; then
      echo "run_all: nvidia-smi shows a GPU ($GPU_INFO) but the CUDA runtime cannot use it:"
      echo "$out" | grep "no GPU" | head -n 1
      exit 1
    fi
    echo "no GPU, skipped"; exit 0
  fi
}
say "test_cuda (every op, CUDA vs CPU)"
run_test test_cuda
say "test_cuda_unet (UNet forward/backward, train step, sampling, CUDA vs CPU)"
run_test test_cuda_unet

# ---- the command line on the GPU ----------------------------------------------
# A tiny teacher trained on the GPU and on the CPU (same seed: the losses must
# be close), then sampled on the GPU and on the CPU from the GPU checkpoint
# with the same noise (the samples must agree to rel L2 1e-3).
cli_line="not run"
cli_rc=0
C=$REP/cli
mkdir -p "$C"
say "CLI: bdense train/sample --device cuda"
if [ "${SKIP_BUILD:-0}" != 1 ] && ! timeout 600 make -j"$JOBS" CUDA=1 BUILD="$BUILD" NVCC="$NVCC" "$BUILD/bdense" >>"$REP/build.log" 2>&1; then
  cli_line="CLI build FAILED"; cli_rc=1
elif [ -x "$BUILD/bdense" ]; then
  BD="$BUILD/bdense"
  tr_args=(--data builtin:16 --config tiny --steps 400 --batch 32 --lr 1e-3 --warmup 50 --ema 0.99 --save-every 0 --seed 1)
  sa_args=(--ckpt "$C/teacher_gpu.safetensors" --n 64 --sampler dpmpp2m --steps 10 --seed 5)
  di_args=(--teacher "$C/teacher_gpu.safetensors" --method pd --data builtin:16 --branches 2 --student-steps 2
           --teacher-substeps 2 --steps 100 --batch 32 --lr 2e-4 --warmup 10 --save-every 0 --eval-n 16 --seed 3)
  td_args=(--teacher "$C/teacher_gpu.safetensors" --method td --branches 2 --student-steps 2 --teacher-substeps 4
           --steps 100 --batch 32 --lr 2e-4 --warmup 10 --save-every 0 --eval-n 16 --seed 4)
  t_a=$(date +%s.%N)
  timeout 300 "$BD" train --device cuda "${tr_args[@]}" --out "$C/teacher_gpu.safetensors" >"$C/train_gpu.log" 2>&1
  r1=$?
  t_b=$(date +%s.%N)
  timeout 300 "$BD" train "${tr_args[@]}" --out "$C/teacher_cpu.safetensors" >"$C/train_cpu.log" 2>&1
  r2=$?
  t_c=$(date +%s.%N)
  timeout 300 "$BD" sample --device cuda "${sa_args[@]}" --out "$C/s_gpu.npy" >"$C/sample_gpu.log" 2>&1
  r3=$?
  timeout 300 "$BD" sample "${sa_args[@]}" --out "$C/s_cpu.npy" >"$C/sample_cpu.log" 2>&1
  r4=$?
  timeout 300 "$BD" distill --device cuda "${di_args[@]}" --out "$C/pd_gpu.safetensors" >"$C/distill_gpu.log" 2>&1
  r5=$?
  timeout 300 "$BD" distill "${di_args[@]}" --out "$C/pd_cpu.safetensors" >"$C/distill_cpu.log" 2>&1
  r6=$?
  timeout 300 "$BD" distill --device cuda "${td_args[@]}" --out "$C/td_gpu.safetensors" >"$C/td_gpu.log" 2>&1
  r7=$?
  timeout 300 "$BD" distill "${td_args[@]}" --out "$C/td_cpu.safetensors" >"$C/td_cpu.log" 2>&1
  r8=$?
  for s in gpu cpu; do
    timeout 120 "$BD" sample --ckpt "$C/pd_$s.safetensors" --n 64 --seed 9 --out "$C/pds_$s.npy" --quiet >>"$C/distill_$s.log" 2>&1
    timeout 120 "$BD" sample --ckpt "$C/td_$s.safetensors" --n 64 --seed 9 --out "$C/tds_$s.npy" --quiet >>"$C/td_$s.log" 2>&1
  done
  if [ "$r1$r2$r3$r4$r5$r6$r7$r8" != 00000000 ]; then
    cli_rc=1; cli_line="CLI FAILED (exit: train gpu $r1, cpu $r2; sample gpu $r3, cpu $r4; distill PD gpu $r5, cpu $r6, TD gpu $r7, cpu $r8; logs in $C)"
    tail -n 5 "$C"/*.log
  else
    cli_line=$(C="$C" TG=$(awk -v a="$t_a" -v b="$t_b" 'BEGIN{printf "%.1f", b-a}') \
               TC=$(awk -v a="$t_b" -v b="$t_c" 'BEGIN{printf "%.1f", b-a}') "$PYTHON" - 2>&1 <<'EOF'
import os, csv
import numpy as np
c = os.environ["C"]
a = np.load(c + "/s_gpu.npy").astype(np.float64)
b = np.load(c + "/s_cpu.npy").astype(np.float64)
rel = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
def last_loss(p):
    rows = list(csv.DictReader(open(p)))
    return float(rows[-1]["loss"]) if rows and "loss" in rows[-1] else float("nan")
lg = last_loss(c + "/teacher_gpu.loss.csv")
lc = last_loss(c + "/teacher_cpu.loss.csv")
def rel_l2(f):
    p = np.load(c + "/" + f + "_gpu.npy").astype(np.float64)
    q = np.load(c + "/" + f + "_cpu.npy").astype(np.float64)
    return float(np.linalg.norm(p - q) / max(np.linalg.norm(q), 1e-30))
dg, dc = last_loss(c + "/pd_gpu.loss.csv"), last_loss(c + "/pd_cpu.loss.csv")
tg, tc = last_loss(c + "/td_gpu.loss.csv"), last_loss(c + "/td_cpu.loss.csv")
drel, trel = rel_l2("pds"), rel_l2("tds")
ok = rel < 1e-3 and bool(np.isfinite(a).all()) and abs(lg - lc) < 0.2 * max(lc, 1e-3)
ok = ok and drel < 1e-2 and abs(dg - dc) < 0.2 * max(dc, 1e-6) and trel < 1e-2 and abs(tg - tc) < 0.2 * max(tc, 1e-6)
print("%s: sample --device cuda vs cpu rel L2 %.2e (tol 1e-3); train 400 steps: last loss GPU %.4f vs CPU %.4f "
      "(%s s vs %s s); distill K=2 100 steps, last loss GPU vs CPU and the students' samples (rel L2, tol 1e-2): "
      "TD %.5f vs %.5f, %.2e; PD %.5f vs %.5f, %.2e"
      % ("PASS" if ok else "FAIL", rel, lg, lc, os.environ.get("TG"), os.environ.get("TC"), tg, tc, trel, dg, dc, drel))
EOF
)
    [ -n "$cli_line" ] || cli_line="FAIL: the comparison did not run"
    case "$cli_line" in PASS*) ;; *) cli_rc=1 ;; esac
  fi
else
  cli_line="skipped: $BUILD/bdense missing"
fi
echo "    $cli_line"

# ---- benchmarks ---------------------------------------------------------------
bench() { # file args...
  local f=$1; shift
  timeout "$BENCH_TIMEOUT" "$@" >"$REP/$f.out" 2>"$REP/$f.err" || echo "{\"error\": \"exit $?\"}" >>"$REP/$f.out"
  grep -E '^\{' "$REP/$f.out" | tail -n 1 >"$REP/$f.json"
  [ -s "$REP/$f.json" ] || echo '{"error": "no result"}' >"$REP/$f.json"
}
say "bench: bdense fp32, tf32 (batch $BATCH)"
bench bd_fp32 "$BUILD/bench/cuda_bench" --batch "$BATCH" --iters "$ITERS" ${BENCH_ARGS:-}
bench bd_tf32 "$BUILD/bench/cuda_bench" --batch "$BATCH" --iters "$ITERS" --tf32 ${BENCH_ARGS:-}
say "bench: PyTorch eager fp32, tf32"
bench pt_fp32 "$PYTHON" bench/cuda_torch_ref.py --batch "$BATCH" --iters "$ITERS"
bench pt_tf32 "$PYTHON" bench/cuda_torch_ref.py --batch "$BATCH" --iters "$ITERS" --tf32

# ---- table ------------------------------------------------------------------
export REP GPU_INFO NVCC_VER BATCH test_cuda_line test_cuda_unet_line test_cuda_worst test_cuda_unet_worst cli_line
"$PYTHON" - >"$REP/table.md" 2>"$REP/table.err" <<'EOF' || { echo "(python3 unavailable: raw results)"; cat "$REP"/*.json; }
import json, os
rep = os.environ["REP"]
def load(n):
    try:
        with open(os.path.join(rep, n + ".json")) as f:
            return json.loads(f.read().strip() or "{}")
    except Exception as e:
        return {"error": str(e)}
bf, bt, pf, pt = load("bd_fp32"), load("bd_tf32"), load("pt_fp32"), load("pt_tf32")
def ms(d, k):
    v = d.get(k)
    return "%.3f" % v if isinstance(v, (int, float)) else ("n/a (%s)" % d["error"] if "error" in d else "n/a")
def ratio(b, p, k):
    x, y = b.get(k), p.get(k)
    return "%.2fx" % (y / x) if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x > 0 else "n/a"
dev = pf.get("device") or os.environ.get("GPU_INFO") or "?"
B = os.environ.get("BATCH", "128")
print("bdense CUDA check - GPU: %s; CUDA %s; PyTorch %s" % (dev, os.environ.get("NVCC_VER", "?"), pf.get("torch", "n/a")))
print()
print("| measurement (SPEC `small` UNet, %s params) | bdense CUDA | PyTorch eager CUDA | speed-up (torch/bdense) |" % bf.get("params", "?"))
print("|---|---|---|---|")
print("| train step, batch %s, fp32 (median ms) | %s | %s | %s |" % (B, ms(bf, "train_ms"), ms(pf, "train_ms"), ratio(bf, pf, "train_ms")))
print("| train step, batch %s, tf32 (median ms) | %s | %s | %s |" % (B, ms(bt, "train_ms"), ms(pt, "train_ms"), ratio(bt, pt, "train_ms")))
print("| network call, batch 1, fp32 (median ms/NFE) | %s | %s | %s |" % (ms(bf, "sample_ms"), ms(pf, "sample_ms"), ratio(bf, pf, "sample_ms")))
print("| network call, batch 1, tf32 (median ms/NFE) | %s | %s | %s |" % (ms(bt, "sample_ms"), ms(pt, "sample_ms"), ratio(bt, pt, "sample_ms")))
print("| 50-step DDIM run, batch 1, fp32 (ms per NFE, whole run) | %s | - | - |" % ms(bf, "ddim_ms_per_nfe"))
print("| test_cuda (every op vs CPU) | %s; worst nmse/tol %s | | |" % (os.environ.get("test_cuda_line") or "no summary", os.environ.get("test_cuda_worst") or "?"))
print("| test_cuda_unet (UNet, train step, sampling vs CPU) | %s; worst nmse/tol %s | | |" % (os.environ.get("test_cuda_unet_line") or "no summary", os.environ.get("test_cuda_unet_worst") or "?"))
print("| bdense train/sample --device cuda (CLI) | %s | | |" % os.environ.get("cli_line", "not run"))
EOF
echo
cat "$REP/table.md"
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  cp "$REP/table.md" "$OUT/" 2>/dev/null
  tar czf "$OUT/cuda-report.tgz" -C "$BUILD" --exclude='*.npy' --exclude='*.safetensors' cuda-report 2>/dev/null
fi
say "done (report: $REP/table.md)"
rc=0
[ "${test_cuda_rc:-1}" = 0 ] || { echo "run_all: test_cuda FAILED (log: $REP/test_cuda.log)"; rc=1; }
[ "${test_cuda_unet_rc:-1}" = 0 ] || { echo "run_all: test_cuda_unet FAILED (log: $REP/test_cuda_unet.log)"; rc=1; }
[ "$cli_rc" = 0 ] || { echo "run_all: CLI on the GPU FAILED ($cli_line)"; rc=1; }
exit $rc
