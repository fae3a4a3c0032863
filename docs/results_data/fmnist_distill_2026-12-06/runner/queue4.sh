#!/usr/bin/env bash
# job list lines: NFE NAME CFG SEED STEPS AUTO   (AUTO=1: STEPS is a cap, stop on the validation plateau)
# lanes running this on the same list claim jobs with an atomic mkdir lock; a job is scored at its last step
cd /work/wt/exp2
T=/work/runs/exp/teacher.safetensors; O=/work/runs/exp/fm
mkdir -p $O/locks
while read -r nfe name cfg seed steps auto; do
  [ -z "$nfe" ] && continue
  case $nfe in \#*) continue;; esac
  mkdir "$O/locks/$name.$steps" 2>/dev/null || continue
  X="nice -n 5 tools/fmnist_distill.sh $T $O"
  echo "[$(date -u +%H:%M:%S)] start: $nfe $name $cfg $seed $steps auto=$auto"
  NFE=$nfe AUTO_STOP=$auto PATIENCE=${PATIENCE:-3} $X student $name $cfg $seed $steps > /dev/null || { echo "FAILED $name"; continue; }
  last=$(tail -n 1 $O/$name.val.csv | cut -d, -f1)
  NFE=$nfe $X score $name $last
  echo "[$(date -u +%H:%M:%S)] done: $name at $last"
done < "${1:?list}"
echo "[$(date -u +%H:%M:%S)] lane finished"
