#!/usr/bin/env bash
# tools/fmnist_distill.sh - the converged B-DENSE vs sparse experiment of
# issue 15 on Fashion-MNIST (docs/results.md §A), one phase per call so a
# long run can be scheduled, resumed and committed piece by piece.
#
#   tools/fmnist_distill.sh TEACHER OUTDIR PHASE [ARGS]
#
# Phases (each skips work whose output exists):
#   caches [val train test]  teacher trajectories at the student's grid, solved
#                        with $R DPM-Solver++(2M) steps per recorded sub-state:
#                        train.npy ($NTRAJ: two halves train_a.npy, seed 1000, and
#                        train_b.npy, seed 1001, concatenated; `caches train_a` and
#                        `caches train_b` make the halves in parallel), val.npy ($NVAL, seed
#                        3000: stopping decisions), test.npy ($NTEST, seed 2000:
#                        the reported trajectory MSE)
#   accuracy             the train cache's accuracy: the first $NFINE of its
#                        trajectories re-solved with R = 1, 2, 8 and $RFINE (the
#                        reference), MSE of every recorded state (traj_acc.py),
#                        and FD-CLF of the cache's endpoints (n = $NFD)
#   teacher [S:N ...]    FD-CLF (n = $NFD vs test, noise seed 1) of the teacher:
#                        dpmpp2m 25, DDIM and dpmpp2m at 1, 2, 4 steps; their
#                        trajectory MSE to the test cache's endpoints
#   student NAME CFG SEED STEPS
#                        train student NAME (config CFG, seed SEED) to STEPS
#                        optimiser steps in segments of $EVAL_EVERY (exact
#                        --resume), after each segment the EMA student's
#                        trajectory MSE on val.npy -> NAME.val.csv, and the EMA
#                        weights -> NAME.sSTEP.safetensors (no optimiser state).
#                        With AUTO_STOP=1, STEPS is a cap: training stops once the
#                        last $PATIENCE validation MSEs are all above (1 - $MIN_DELTA)
#                        x the best one before them (no relative improvement
#                        > MIN_DELTA for PATIENCE x EVAL_EVERY steps) -> NAME.stop.txt
#   score NAME STEP      trajectory MSE on test.npy and FD-CLF (n = $NFD, noise
#                        seed 1, as the teacher's) of NAME.sSTEP.safetensors -> scores.csv
#   draws NAME STEP SEEDS  FD-CLF of the same student from other noise seeds
#                        (the metric's draw-to-draw noise) -> draws.csv
# Configurations CFG: k1 sparse (K = 1); k4 K = 4 uniform; k2t K = 2 uniform, dense targets from
#   the trajectories; k4g K = 4 agree;
#   k2 K = 2 uniform; k4t / k4gt / k4an / k4ax K = 4 uniform / agree / anneal / aux
#   with dense targets read from the trajectories (--dense-targets trajectory).
#   cd1 / cd2 / cd4: consistency distillation (--method cd, Fashion-MNIST training
#   images as data, $CD_KT consistency intervals per student step, each one teacher
#   step of $R_CD DDIM steps: 32 teacher DDIM steps in all, few hops to the boundary),
#   sparse or with the B-DENSE head (K = 2 / 4, uniform);  pd1 / pd4: progressive
#   distillation, one round, $PD_KT DDIM teacher steps per student step.  Dense targets otherwise come
#   from the student's own state (the default), solved with Kt = 4 teacher
#   steps per student step (--teacher-refine $DRF).
# Knobs (environment, defaults in brackets): BDENSE [build/bdense] TRAJ_EVAL
#   [build/traj_eval] CKPT_STRIP [build/ckpt_strip] NFE [2] KT [4] R [4] NTRAJ [2048] NVAL [256] NTEST [500]
#   NFINE [64] RFINE [16] NFD [2000] BATCH [8] LR [2e-4] WARMUP [50] EMA [0.995]
#   EVAL_EVERY [100] DRF [1] CD_KT [8/NFE] R_CD [4] PD_KT [16] THREADS [1] FMNIST [/usr/share/datasets/fashion-mnist]
#   FEATURES [docs/fmnist/classifier.safetensors]
# The students' cache is the NFE-2 one (the default sub-division is uniform
# in t, so the teacher grids nest: NFE 2 x KT 4 = NFE 1 x KT 8 = NFE 4 x KT 2,
# all 1 - i/8); NFE 1 and NFE 4 students read the same file with
# --teacher-substeps 2*KT/NFE, and K may divide that (K = 4 at NFE 1 targets
# every other state).
set -u
teacher=${1:?usage: tools/fmnist_distill.sh TEACHER OUTDIR PHASE [ARGS]}
out=${2:?usage: tools/fmnist_distill.sh TEACHER OUTDIR PHASE [ARGS]}
phase=${3:?usage: tools/fmnist_distill.sh TEACHER OUTDIR PHASE [ARGS]}
shift 3
BDENSE=${BDENSE:-build/bdense}
TRAJ_EVAL=${TRAJ_EVAL:-build/traj_eval}
CKPT_STRIP=${CKPT_STRIP:-build/ckpt_strip}
NFE=${NFE:-2}
KT=${KT:-4}
R=${R:-4}
NTRAJ=${NTRAJ:-2048}
NVAL=${NVAL:-256}
NTEST=${NTEST:-500}
NFINE=${NFINE:-64}
RFINE=${RFINE:-16}
NFD=${NFD:-2000}
BATCH=${BATCH:-8}
LR=${LR:-2e-4}
WARMUP=${WARMUP:-50}
EMA=${EMA:-0.995}
EVAL_EVERY=${EVAL_EVERY:-100}
AUTO_STOP=${AUTO_STOP:-0}
PATIENCE=${PATIENCE:-2}
MIN_DELTA=${MIN_DELTA:-0.01}
DRF=${DRF:-1}
R_CD=${R_CD:-4}
CD_KT=${CD_KT:-$((8 / NFE))}
PD_KT=${PD_KT:-16}
THREADS=${THREADS:-1}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
FEATURES=${FEATURES:-docs/fmnist/classifier.safetensors}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
say() { echo "[$(date -u +%H:%M:%S)] $*"; }
need() { [ -x "$1" ] || { echo "fmnist_distill: $1 not built"; exit 1; }; }
need "$BDENSE"
[ -f "$teacher" ] || { echo "fmnist_distill: no teacher $teacher"; exit 1; }
fdclf() { # samples.npy -> the FD-CLF number (n = NFD vs the first NFD test images)
  "$BDENSE" eval --samples "$1" --features "$FEATURES" --data "fmnist-test:$FMNIST" --ref-n "$NFD" \
    --n "$NFD" --threads "$THREADS" --quiet | sed -n 's/^FD-CLF \([0-9.eE+-]*\).*/\1/p' | tail -1
}
traj() { # file n seed refine
  [ -f "$1" ] && return 0
  say "trajectories $1: $2 x NFE $NFE x $KT sub-steps x R $4"
  local t1; t1=$(date +%s)
  "$BDENSE" trajectories --teacher "$teacher" --student-steps "$NFE" --teacher-substeps "$KT" --teacher-refine "$4" \
    --n "$2" --seed "$3" --batch 32 --threads "$THREADS" --quiet --out "$1" || { say "trajectories $1 failed"; exit 1; }
  echo "$(basename "$1"),$2,$3,$NFE,$KT,$4,$(( $(date +%s) - t1 ))" >> "$out/caches.csv"
}
cfg_opts() { # CFG -> distill options
  case $1 in
    k1) echo "--branches 1 --weights final";;
    k2) echo "--branches 2 --weights uniform";;
    k2t) echo "--branches 2 --weights uniform --dense-targets trajectory";;
    k4) echo "--branches 4 --weights uniform";;
    k4g) echo "--branches 4 --weights agree";;
    k4a) echo "--branches 4 --weights adaptive";;
    k4t) echo "--branches 4 --weights uniform --dense-targets trajectory";;
    k4gt) echo "--branches 4 --weights agree --dense-targets trajectory";;
    k4an) echo "--branches 4 --weights anneal --dense-targets trajectory";;
    k4ax) echo "--branches 4 --weights aux --dense-targets trajectory";;
    # consistency distillation (data, one DDIM teacher step of R_CD fine steps per interval)
    cd1) echo "--method cd --branches 1 --weights final";;
    cd2) echo "--method cd --branches 2 --weights uniform";;
    cd4) echo "--method cd --branches 4 --weights uniform";;
    # progressive distillation, one round (data, PD_KT DDIM teacher steps per student step)
    pd1) echo "--method pd --branches 1 --weights final";;
    pd4) echo "--method pd --branches 4 --weights uniform";;
    *) echo "";;
  esac
}

case $phase in
caches)
  [ -f "$out/caches.csv" ] || echo "file,n,seed,nfe,kt,refine,wall_s" > "$out/caches.csv"
  for c in ${*:-val train test}; do
    case $c in
      val) traj "$out/val.npy" "$NVAL" 3000 "$R";;
      train_a) traj "$out/train_a.npy" $((NTRAJ / 2)) 1000 "$R";;
      train_b) traj "$out/train_b.npy" $((NTRAJ - NTRAJ / 2)) 1001 "$R";;
      train)
        traj "$out/train_a.npy" $((NTRAJ / 2)) 1000 "$R"
        traj "$out/train_b.npy" $((NTRAJ - NTRAJ / 2)) 1001 "$R"
        [ -f "$out/train.npy" ] || "${PYTHON:-/usr/bin/python3}" -c "import numpy as np, sys
a = np.load(sys.argv[1]); b = np.load(sys.argv[2]); np.save(sys.argv[3] + '.tmp.npy', np.concatenate([a, b]))" \
          "$out/train_a.npy" "$out/train_b.npy" "$out/train" && mv "$out/train.tmp.npy" "$out/train.npy" || exit 1;;
      test) traj "$out/test.npy" "$NTEST" 2000 "$R";;
      *) echo "unknown cache $c"; exit 2;;
    esac
  done
  ;;
accuracy)
  need "$TRAJ_EVAL"
  [ -f "$out/caches.csv" ] || echo "file,n,seed,nfe,kt,refine,wall_s" > "$out/caches.csv"
  for r in 1 2 8 "$RFINE"; do
    [ "$r" = "$R" ] && continue
    traj "$out/acc_r$r.npy" "$NFINE" 1000 "$r"
  done
  s=$((NFE * KT))
  "${PYTHON:-/usr/bin/python3}" "$here/traj_acc.py" "$out/acc_r$RFINE.npy" "$NFINE" "$s NFE=$out/acc_r1.npy" "$((2 * s)) NFE=$out/acc_r2.npy" \
    "$((R * s)) NFE (the cache)=$out/train.npy" "$((8 * s)) NFE=$out/acc_r8.npy" > "$out/accuracy.md" || exit 1
  echo "| images vs test[0:$NFD] | FD-CLF (n = $NFD) |" >> "$out/accuracy.md"
  echo "|---|---|" >> "$out/accuracy.md"
  # the first NFD endpoints of the train cache (the test cache holds fewer than NFD)
  [ -f "$out/train_end.npy" ] || "$TRAJ_EVAL" --n "$NFD" --endpoints "$out/train_end.npy" "$out/train.npy" > /dev/null || exit 1
  echo "| train cache endpoints [0:$NFD] ($NFE x $KT x R $R = $((NFE * KT * R)) NFE dpmpp2m) | $(fdclf "$out/train_end.npy") |" >> "$out/accuracy.md"
  cat "$out/accuracy.md"
  ;;
teacher)
  need "$TRAJ_EVAL"
  f="$out/teacher.csv"
  [ -f "$f" ] || echo "sampler,steps,nfe,fd_clf,traj_mse,traj_mse_se" > "$f"
  for s in ${*:-dpmpp2m:25 ddim:1 ddim:2 ddim:4 dpmpp2m:4 dpmpp2m:1 dpmpp2m:2}; do
    sampler=${s%%:*}; steps=${s##*:}
    grep -q "^$sampler,$steps," "$f" && continue
    say "teacher $sampler $steps"
    m=$("$TRAJ_EVAL" --n "$NTEST" --threads "$THREADS" --sampler "$sampler" --steps "$steps" "$out/test.npy" "$teacher" | tail -1)
    mm=$(echo "$m" | cut -d, -f4,5)
    # DPM-Solver++(2M) at 1 and 2 steps takes only first-order steps (its last step is first order), i.e. it IS
    # DDIM: identical samples (checked here on the test noises), so DDIM's FD-CLF is reused
    same=$(grep "^ddim,$steps,.*,$mm\$" "$f" | head -1 | cut -d, -f4)
    if [ "$sampler" = dpmpp2m ] && [ -n "$same" ]; then
      fd=$same
    else
      fd=$("$BDENSE" eval --ckpt "$teacher" --features "$FEATURES" --data "fmnist-test:$FMNIST" --ref-n "$NFD" \
            --n "$NFD" --sampler "$sampler" --steps "$steps" --seed 1 --threads "$THREADS" --quiet |
           sed -n 's/^FD-CLF \([0-9.eE+-]*\).*/\1/p' | tail -1)
    fi
    echo "$sampler,$steps,$(echo "$m" | cut -d, -f3),$fd,$mm" >> "$f"
  done
  cat "$f"
  ;;
student)
  need "$TRAJ_EVAL"
  name=${1:?student NAME CFG SEED STEPS}; cfg=${2:?}; seed=${3:?}; steps=${4:?}
  opts=$(cfg_opts "$cfg"); [ -n "$opts" ] || { echo "unknown config $cfg"; exit 2; }
  ck="$out/$name.safetensors"; val="$out/$name.val.csv"
  [ -f "$val" ] || echo "step,val_mse,val_mse_se,wall_s" > "$val"
  kt=$((2 * KT / NFE))   # NFE 1 and 4 read the NFE-2 cache (see above)
  cache=${CACHE:-$out/train.npy}
  cur=$(tail -n 1 "$val" | cut -d, -f1); [ "$cur" = step ] && cur=0
  if [ "$cur" = 0 ]; then  # the copied teacher before training
    m=$("$TRAJ_EVAL" --n "$NVAL" --threads "$THREADS" --sampler ddim --steps "$NFE" "$out/val.npy" "$teacher" | tail -1)
    echo "0,$(echo "$m" | cut -d, -f4,5),0" >> "$val"
  fi
  while [ "$cur" -lt "$steps" ]; do
    next=$(( cur + EVAL_EVERY )); [ "$next" -gt "$steps" ] && next=$steps
    resume=""; [ -f "$ck" ] && resume="--resume $ck"
    t1=$(date +%s)
    case $cfg in
      cd*) src="--data fmnist:$FMNIST --teacher-substeps $CD_KT --teacher-refine $R_CD";;
      pd*) src="--data fmnist:$FMNIST --teacher-substeps $PD_KT";;
      *) src="--method td --teacher-substeps $kt --teacher-refine $DRF --trajectories $cache";;
    esac
    # shellcheck disable=SC2086
    "$BDENSE" distill --teacher "$teacher" $opts $src --student-steps "$NFE" --steps "$next" --batch "$BATCH" --lr "$LR" \
      --warmup "$WARMUP" --ema "$EMA" --seed "$seed" --log-every 10 --save-every 0 --eval-n 1 \
      --threads "$THREADS" --quiet $resume --out "$ck" >> "$out/$name.log" 2>&1 || { say "FAILED $name (see $out/$name.log)"; exit 1; }
    t2=$(date +%s)
    "$CKPT_STRIP" "$ck" "$out/$name.s$next.safetensors" > /dev/null || exit 1
    m=$("$TRAJ_EVAL" --n "$NVAL" --threads "$THREADS" "$out/val.npy" "$out/$name.s$next.safetensors" | tail -1)
    echo "$next,$(echo "$m" | cut -d, -f4,5),$((t2 - t1))" >> "$val"
    say "$name step $next: val MSE $(echo "$m" | cut -d, -f4) ($((t2 - t1)) s)"
    cur=$next
    if [ "$AUTO_STOP" = 1 ] && awk -F, -v P="$PATIENCE" -v d="$MIN_DELTA" '
        NR > 2 { v[++n] = $2; s[n] = $1 }   # skip the header and step 0
        END { if (n <= P) exit 1
              b = v[1]; for (i = 2; i <= n - P; i++) if (v[i] < b) b = v[i]
              for (i = n - P + 1; i <= n; i++) if (v[i] < (1 - d) * b) exit 1
              exit 0 }' "$val"; then
      echo "stopped at step $cur: the last $PATIENCE validation MSEs improve on the best before them by < $MIN_DELTA (relative)" \
        | tee "$out/$name.stop.txt"
      break
    fi
  done
  ;;
score)
  need "$TRAJ_EVAL"
  name=${1:?score NAME STEP}; step=${2:?}
  f="$out/scores.csv"
  [ -f "$f" ] || echo "name,step,nfe,n,traj_mse,traj_mse_se,psnr_db,fd_clf" > "$f"
  grep -q "^$name,$step," "$f" && exit 0
  [ -f "$out/$name.s$step.safetensors" ] || { say "score: no $out/$name.s$step.safetensors"; exit 1; }
  m=$("$TRAJ_EVAL" --n "$NTEST" --threads "$THREADS" "$out/test.npy" "$out/$name.s$step.safetensors" | tail -1) || exit 1
  fd=$("$BDENSE" eval --ckpt "$out/$name.s$step.safetensors" --features "$FEATURES" --data "fmnist-test:$FMNIST" \
        --ref-n "$NFD" --n "$NFD" --seed 1 --threads "$THREADS" --quiet | sed -n 's/^FD-CLF \([0-9.eE+-]*\).*/\1/p' | tail -1)
  echo "$name,$step,$(echo "$m" | cut -d, -f3),$(echo "$m" | cut -d, -f2),$(echo "$m" | cut -d, -f4-6),$fd" >> "$f"
  say "score $name s$step: $(tail -n 1 "$f")"
  ;;
draws)
  name=${1:?draws NAME STEP SEEDS}; step=${2:?}; seeds=${3:?}
  f="$out/draws.csv"
  [ -f "$f" ] || echo "name,step,seed,fd_clf" > "$f"
  for s in $seeds; do
    grep -q "^$name,$step,$s," "$f" && continue
    fd=$("$BDENSE" eval --ckpt "$out/$name.s$step.safetensors" --features "$FEATURES" --data "fmnist-test:$FMNIST" \
          --ref-n "$NFD" --n "$NFD" --seed "$s" --threads "$THREADS" --quiet | sed -n 's/^FD-CLF \([0-9.eE+-]*\).*/\1/p' | tail -1)
    echo "$name,$step,$s,$fd" >> "$f"
  done
  cat "$f"
  ;;
*) echo "fmnist_distill: unknown phase $phase"; exit 2;;
esac
