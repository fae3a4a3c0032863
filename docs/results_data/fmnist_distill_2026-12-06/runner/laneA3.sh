#!/usr/bin/env bash
# lane A, after laneA2 (teacher dpmpp2m 25, accuracy): the sparse pilot continued from step 500 with patience 4
# (the patience-2 rule had stopped it at 500 on a plateau; the K=4 pilot improved by 25% after step 700)
cd /work/wt/exp
T=/work/runs/exp/teacher.safetensors; O=/work/runs/exp/fm
X="nice -n 5 tools/fmnist_distill.sh $T $O"
while pgrep -f laneA2.sh > /dev/null; do sleep 5; done
AUTO_STOP=1 PATIENCE=4 $X student n2_k1_s0 k1 0 ${CAP:-2000}
echo laneA3 done
