#!/usr/bin/env bash
# the experiment's queue after the pilots: tasks in order, $JOBS [1] at a time (one queue per lane), S = the step count from the pilots
cd /work/wt/exp
T=/work/runs/exp/teacher.safetensors; O=/work/runs/exp/fm
S=$(cat /work/runs/exp/S)
export T O S
[ -f $O/scores.csv ] || echo "name,step,nfe,n,traj_mse,traj_mse_se,psnr_db,fd_clf" > $O/scores.csv
[ -f $O/teacher.csv ] || echo "sampler,steps,nfe,fd_clf,traj_mse,traj_mse_se" > $O/teacher.csv
[ -f $O/draws.csv ] || echo "name,step,seed,fd_clf" > $O/draws.csv
task() { # one line of the list
  local X="nice -n 5 tools/fmnist_distill.sh $T $O"
  echo "[$(date -u +%H:%M:%S)] start: $*"
  case $1 in
    teacher) shift; $X teacher "$@" > /dev/null;;
    accuracy) $X accuracy > /dev/null;;
    student) $X student $2 $3 $4 $S > /dev/null && $X score $2 $S;;
    score) $X score $2 $S;;
    draws) n=$2; shift 2; $X draws $n $S "$*" > /dev/null;;
    nfe1) NFE=1 $X student $2 $3 $4 $S > /dev/null && NFE=1 $X score $2 $S;;
  esac
  echo "[$(date -u +%H:%M:%S)] done: $*"
}
export -f task
cat "${1:-/work/runs/exp/queue.txt}" | xargs -P "${JOBS:-1}" -I{} bash -c 'task {}'
echo queue finished
