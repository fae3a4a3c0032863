#!/usr/bin/env bash
# Recreates examples/sprites/student.safetensors, the tiny distilled student
# the sprites example ships with: a 41k-parameter UNet teacher trained on
# the built-in 16x16 shapes, distilled (TD, B-DENSE K = 2, uniform weights)
# into a 2-step student, optimiser state stripped.  About 20-30 min on 2
# cores.  Usage: examples/sprites/make_student.sh [BUILD_DIR] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
work=${2:-out/sprites}
make -s "$build/bdense" BUILD="$build"
mkdir -p "$work" "$build/tools"
cc -std=c99 -O2 -I. tools/ckpt_strip.c -o "$build/tools/ckpt_strip" -lm
bd="$build/bdense"
"$bd" train --data builtin:16 --config tiny --ch 8 --steps "${TEACHER_STEPS:-4000}" --batch 32 \
    --lr 1e-3 --lr-schedule cosine --warmup 100 --ema 0.995 --save-every 0 --seed 11 \
    --out "$work/teacher.safetensors"
"$bd" distill --teacher "$work/teacher.safetensors" --method td --branches 2 --weights uniform \
    --student-steps 2 --teacher-substeps 4 --steps "${STUDENT_STEPS:-500}" --batch 16 --lr 2e-4 \
    --warmup 50 --ema 0.99 --save-every 0 --seed 12 --out "$work/student_full.safetensors"
"$build/tools/ckpt_strip" "$work/student_full.safetensors" examples/sprites/student.safetensors
