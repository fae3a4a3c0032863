#!/usr/bin/env bash
# make demo: the README's main job, on the built-in shapes (no download).
#   1. train a tiny teacher                         (bdense train)
#   2. cache its ODE trajectories once              (bdense trajectories)
#   3. distil a sparse (K=1) and a B-DENSE (K=2)    (bdense distill, TD, 2 steps,
#      student from the same trajectories, same steps, batch and lr)
#   4. compare them to the teacher on shared noise   (bdense compare)
# Everything goes to $DEMO_OUT (default out/demo/, git-ignored).  Sized for < 5 minutes on
# 2 cores (about 4 min on an idle 2-core Xeon); DEMO_SCALE=2 doubles every budget,
# DEMO_SCALE=0.1 makes a smoke run.
# Usage: tools/demo.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
bd="$build/bdense"
out=${DEMO_OUT:-out/demo}
scale=${DEMO_SCALE:-1}
[ -x "$bd" ] || { echo "demo: $bd is missing; run make" >&2; exit 1; }
mkdir -p "$out"
n() { awk -v a="$1" -v s="$scale" 'BEGIN { v = int(a * s + 0.5); if (v < 1) v = 1; print v }'; }
T0=$(date +%s)
say() { printf '\n=== [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

say "1/4 train a tiny teacher on built-in 16x16 shapes"
"$bd" train --data builtin:16 --config tiny --steps "$(n 1000)" --batch 32 --lr 1e-3 --lr-schedule cosine --warmup 100 \
    --ema 0.995 --save-every 0 --seed 1 --out "$out/teacher.safetensors"

say "2/4 teacher trajectories (DPM-Solver++ 2M, 2 student steps x 4 sub-steps)"
"$bd" trajectories --teacher "$out/teacher.safetensors" --student-steps 2 --teacher-substeps 4 \
    --n "$(n 512)" --seed 2 --out "$out/traj.npy"

common=(--teacher "$out/teacher.safetensors" --method td --student-steps 2 --teacher-substeps 4
        --trajectories "$out/traj.npy" --steps "$(n 200)" --batch 16 --lr 2e-4 --warmup 20 --ema 0.99
        --save-every 0 --seed 3)
say "3/4 distil: sparse baseline (K=1) and B-DENSE (K=2, uniform weights)"
"$bd" distill "${common[@]}" --branches 1 --out "$out/sparse.safetensors"
"$bd" distill "${common[@]}" --branches 2 --weights uniform --out "$out/bdense.safetensors"

say "4/4 compare on shared noise"
"$bd" compare --teacher "$out/teacher.safetensors" --students "$out/sparse.safetensors" "$out/bdense.safetensors" \
    --n "$(n 256)" --seed 4 --ref-steps 50 --data builtin:16 --ref-n 2000 --grids "$out/compare" \
    --csv "$out/compare.csv"

say "done; pictures: $out/compare.png (rows: teacher reference, teacher at 2 steps, sparse, B-DENSE),"
echo "    $out/teacher.loss.png, $out/sparse.loss.png, $out/bdense.loss.png; table: $out/compare.csv"
