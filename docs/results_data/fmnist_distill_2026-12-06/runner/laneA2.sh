#!/usr/bin/env bash
# lane A after the sparse pilot stopped (12:21): the S-independent tasks
cd /work/wt/exp
T=/work/runs/exp/teacher.safetensors; O=/work/runs/exp/fm
X="nice -n 5 tools/fmnist_distill.sh $T $O"
$X teacher dpmpp2m:25
$X accuracy
echo laneA2 done
