#!/usr/bin/env bash
# tools/experiment.sh - the B-DENSE experiment of issue 4 (docs/results.md).
#
#   tools/experiment.sh TEACHER.safetensors OUTDIR
#
# For every student NFE N in $NFES, every configuration in $CONFIGS and every
# seed in $SEEDS: TD-distil a student from TEACHER with the SAME cached teacher
# trajectories (one .npy per N, DPM-Solver++(2M), KT=4 sub-steps per student
# step, so K=1,2,4 all see the same teacher states), the same optimiser steps,
# batch and learning rate; then `bdense compare` per N (trajectory error to the
# teacher's reference sample, PSNR, FD-RF, time), `bdense sample` of every
# final student to .npy, and tools/experiment_table.py writes the summary
# (mean +- std over seeds) to OUTDIR/results.md.  Resumable: finished pieces
# (their output files exist) are skipped, so rerunning continues.
#
# Configurations: k1 = sparse baseline (K=1), k2 = B-DENSE K=2 uniform,
# k4 = K=4 uniform, k4a = K=4 adaptive, k2a = K=2 adaptive, k4f = K=4 with
# final-only weights (the sparse loss through the 4-branch head).
#
# Budget knobs (environment, defaults in brackets):
#   BDENSE [build/bdense]  NFES ["1 2 4"]  CONFIGS ["k1 k2 k4 k4a"]  SEEDS ["0 1 2"]
#   STEPS [100] BATCH [8] LR [2e-4] WARMUP [10] EMA [0.99]  NTRAJ [256]
#   KT [4]  EVAL_N [200] REF_STEPS [40]  JOBS [2] (parallel runs) THREADS [1]
#   DATA [fmnist-test:/usr/share/datasets/fashion-mnist] (FD-RF reference)
# Cost: a student step costs BATCH x N forward+backward passes (small UNet,
# one core: ~70 ms each), so the students take about
#   STEPS*BATCH*sum(NFES)*|CONFIGS|*|SEEDS| * 0.07 s / JOBS
# (defaults: 100*8*7*4*3*0.07/2 = 39 min on 2 free cores), plus trajectories
# (NTRAJ*KT*sum(NFES) teacher calls, ~17 ms each: 2 min) and the compares
# (3 x EVAL_N*REF_STEPS teacher calls: ~7 min).  The script prints this
# estimate first.
# Run it in the background, e.g.
#   nice -n 10 tools/experiment.sh teacher.safetensors exp > exp.log 2>&1 &
set -u
teacher=${1:?usage: tools/experiment.sh TEACHER OUTDIR}
out=${2:?usage: tools/experiment.sh TEACHER OUTDIR}
BDENSE=${BDENSE:-build/bdense}
NFES=${NFES:-"1 2 4"}
CONFIGS=${CONFIGS:-"k1 k2 k4 k4a"}
SEEDS=${SEEDS:-"0 1 2"}
STEPS=${STEPS:-100}
BATCH=${BATCH:-8}
LR=${LR:-2e-4}
WARMUP=${WARMUP:-10}
EMA=${EMA:-0.99}
NTRAJ=${NTRAJ:-256}
KT=${KT:-4}
EVAL_N=${EVAL_N:-200}
REF_STEPS=${REF_STEPS:-40}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
DATA=${DATA:-fmnist-test:/usr/share/datasets/fashion-mnist}
mkdir -p "$out"
[ -x "$BDENSE" ] || { echo "experiment: $BDENSE not built (make)"; exit 1; }
[ -f "$teacher" ] || { echo "experiment: no teacher $teacher"; exit 1; }
runs="$out/runs.csv"
[ -f "$runs" ] || echo "name,nfe,config,branches,weights,seed,steps,batch,lr,wall_s" > "$runs"
cat > "$out/settings.txt" <<EOT
teacher=$teacher NFES="$NFES" CONFIGS="$CONFIGS" SEEDS="$SEEDS" STEPS=$STEPS BATCH=$BATCH LR=$LR
WARMUP=$WARMUP EMA=$EMA NTRAJ=$NTRAJ KT=$KT EVAL_N=$EVAL_N REF_STEPS=$REF_STEPS JOBS=$JOBS THREADS=$THREADS
DATA=$DATA  bdense $($BDENSE --version 2>/dev/null | head -1)  host $(uname -n) $(nproc) cores
EOT
T0=$(date +%s)
say() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*"; }
nsum=0; for N in $NFES; do nsum=$((nsum + N)); done
ncfg=$(echo $CONFIGS | wc -w); nseed=$(echo $SEEDS | wc -w)
say "estimate (small UNet, 70 ms per image fwd+bwd, 17 ms per teacher call, one core each):" \
    "students $(( STEPS * BATCH * nsum * ncfg * nseed * 70 / 1000 / JOBS / 60 )) min," \
    "trajectories $(( NTRAJ * KT * nsum * 17 / 1000 / 60 )) min," \
    "compares $(( $(echo $NFES | wc -w) * EVAL_N * REF_STEPS * 17 / 1000 / 60 )) min"

cfg_k() { case $1 in k1) echo 1;; k2|k2a) echo 2;; k4|k4a|k4f) echo 4;; *) echo 0;; esac; }
cfg_w() { case $1 in k1) echo final;; k2|k4) echo uniform;; k2a|k4a) echo adaptive;; k4f) echo final;; *) echo "";; esac; }

# 1. teacher trajectories, one file per NFE (shared by every config and seed)
for N in $NFES; do
  f="$out/traj_n$N.npy"
  if [ ! -f "$f" ]; then
    say "trajectories N=$N: $NTRAJ x $((N*KT)) teacher steps"
    "$BDENSE" trajectories --teacher "$teacher" --student-steps "$N" --teacher-substeps "$KT" \
      --n "$NTRAJ" --seed 1000 --batch 32 --threads "$THREADS" --quiet --out "$f" || { say "trajectories N=$N failed"; exit 1; }
  fi
done

# 2. students (JOBS at a time)
one_run() { # N cfg seed
  local N=$1 cfg=$2 seed=$3 K W name t1 t2
  K=$(cfg_k "$cfg"); W=$(cfg_w "$cfg"); name="n${N}_${cfg}_s${seed}"
  [ "$K" = 0 ] && { echo "unknown config $cfg"; return 1; }
  [ -f "$out/$name.safetensors" ] && return 0
  t1=$(date +%s.%N)
  if "$BDENSE" distill --teacher "$teacher" --method td --branches "$K" --weights "$W" \
       --student-steps "$N" --teacher-substeps "$KT" --trajectories "$out/traj_n$N.npy" \
       --steps "$STEPS" --batch "$BATCH" --lr "$LR" --warmup "$WARMUP" --ema "$EMA" --seed "$seed" \
       --log-every 5 --save-every 0 --threads "$THREADS" --quiet --out "$out/$name.safetensors" \
       > "$out/$name.log" 2>&1; then
    t2=$(date +%s.%N)
    echo "$name,$N,$cfg,$K,$W,$seed,$STEPS,$BATCH,$LR,$(echo "$t2 - $t1" | bc)" >> "$runs"
    echo "[$(date +%H:%M:%S)] done $name"
  else
    echo "[$(date +%H:%M:%S)] FAILED $name (see $out/$name.log)"
  fi
}
export -f one_run cfg_k cfg_w
export out teacher BDENSE KT STEPS BATCH LR WARMUP EMA THREADS runs
say "students: NFE {$NFES} x {$CONFIGS} x seeds {$SEEDS}, $STEPS steps of batch $BATCH, $JOBS at a time"
for seed in $SEEDS; do for N in $NFES; do for cfg in $CONFIGS; do echo "$N $cfg $seed"; done; done; done |
  xargs -P "$JOBS" -L 1 bash -c 'one_run $0 $1 $2'

# 3. comparison per NFE (same noise for every model), samples to .npy
for N in $NFES; do
  csv="$out/compare_n$N.csv"
  studs=$(for cfg in $CONFIGS; do for seed in $SEEDS; do f="$out/n${N}_${cfg}_s${seed}.safetensors"; [ -f "$f" ] && echo "$f"; done; done)
  if [ ! -f "$csv" ] && [ -n "$studs" ]; then
    say "compare N=$N"
    # shellcheck disable=SC2086
    "$BDENSE" compare --teacher "$teacher" --students $studs --n "$EVAL_N" --seed 4242 \
      --ref-sampler dpmpp2m --ref-steps "$REF_STEPS" --data "$DATA" --ref-n 2000 --grids "$out/grid_n$N" --show 8 \
      --threads "$JOBS" --quiet --csv "$csv" > "$out/compare_n$N.txt" 2>&1 || say "compare N=$N failed"
  fi
done
for f in "$out"/n*_s*.safetensors; do
  [ -f "$f" ] || continue
  s="${f%.safetensors}.samples.npy"
  [ -f "$s" ] || "$BDENSE" sample --ckpt "$f" --n 64 --seed 7 --threads "$JOBS" --quiet --out "$s" > /dev/null 2>&1 || say "sample $f failed"
done

# 4. the table
python3 "$(dirname "$0")/experiment_table.py" "$out" > "$out/results.md" && say "wrote $out/results.md"
say "experiment finished"
