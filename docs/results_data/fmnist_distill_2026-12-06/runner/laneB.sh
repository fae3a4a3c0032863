#!/usr/bin/env bash
# lane B (restarted 11:59): wait for the test cache (pid 5800), train_b, then the K=4 uniform pilot
cd /work/wt/exp
T=/work/runs/exp/teacher.safetensors; O=/work/runs/exp/fm
X="nice -n 5 tools/fmnist_distill.sh $T $O"
while kill -0 5800 2>/dev/null; do sleep 5; done
$X caches test train_b || exit 1
while [ ! -f $O/train.npy ]; do sleep 5; done
AUTO_STOP=1 $X student n2_k4t_s0 k4t 0 ${CAP:-2000}
echo laneB pilot done
