#!/usr/bin/env bash
# lane B: the K=4 uniform pilot continued from its patience-2 stop (1200) with patience 4, as the sparse one
cd /work/wt/exp
T=/work/runs/exp/teacher.safetensors; O=/work/runs/exp/fm
X="nice -n 5 tools/fmnist_distill.sh $T $O"
AUTO_STOP=1 PATIENCE=4 $X student n2_k4t_s0 k4t 0 ${CAP:-2000}
echo laneB2 done
