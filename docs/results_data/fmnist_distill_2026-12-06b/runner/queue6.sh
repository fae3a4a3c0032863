#!/usr/bin/env bash
# job lines: "student NFE NAME CFG SEED STEPS AUTO [CACHE]" or "score NFE NAME STEP"; mkdir locks shared by lanes
cd /work/wt/exp3
export BDENSE=/work/runs/bin/bdense TRAJ_EVAL=/work/runs/bin/traj_eval CKPT_STRIP=/work/runs/bin/ckpt_strip
T=/work/runs/exp/teacher.safetensors; O=/work/runs/exp/fm
mkdir -p $O/locks
while read -r kind nfe name a b c d e; do
  [ -z "$kind" ] && continue
  case $kind in \#*) continue;; esac
  X="nice -n 5 tools/fmnist_distill.sh $T $O"
  if [ "$kind" = score ]; then
    mkdir "$O/locks/score.$name.$a" 2>/dev/null || continue
    echo "[$(date -u +%H:%M:%S)] score $name $a"
    NFE=$nfe $X score $name $a
    continue
  fi
  cfg=$a; seed=$b; steps=$c; auto=$d; cache=${e:-}
  mkdir "$O/locks/$name.$steps" 2>/dev/null || continue
  echo "[$(date -u +%H:%M:%S)] start: $nfe $name $cfg $seed $steps auto=$auto ${cache}"
  ev=100; case $cfg in cd*) ev=200;; esac
  EVAL_EVERY=${EVAL_EVERY:-$ev} CACHE=${cache:+$O/$cache} NFE=$nfe AUTO_STOP=$auto PATIENCE=${PATIENCE:-3} $X student $name $cfg $seed $steps > /dev/null || { echo "FAILED $name"; continue; }
  last=$(tail -n 1 $O/$name.val.csv | cut -d, -f1)
  NFE=$nfe $X score $name $last
  echo "[$(date -u +%H:%M:%S)] done: $name at $last"
done < "${1:?list}"
echo "[$(date -u +%H:%M:%S)] lane finished"
