#!/usr/bin/env bash
# third session: copy the new result files into main's results_data, regenerate tables.md
cd /work/main
O=/work/runs/exp/fm; D=docs/results_data/fmnist_distill_2026-12-06
mkdir -p $D/logs $D/runner
for f in $O/n1_* $O/n4_* $O/d128_*; do
  case $f in *.csv|*.txt) cp "$f" $D/;; *.log) cp "$f" $D/logs/;; esac
done
cp $O/scores.csv $D/
for f in laneD laneE laneH laneI; do cp /work/runs/exp/$f.log $D/logs/$f.log; done
cp /work/runs/exp/queue4.sh /work/runs/exp/queue5.sh /work/runs/exp/jobs4.txt /work/runs/exp/jobs5.txt /work/runs/exp/jobs6.txt /work/runs/exp/collect3.sh $D/runner/
STEPS="1:2000,2:1000,4:1400" /usr/bin/python3 tools/fmnist_distill_table.py $O > $D/tables.md
{ echo; echo "## small budgets (NFE 2 at 200 and 500 steps)"; echo
  for st in 200 500; do STEPS="2:$st" /usr/bin/python3 tools/fmnist_distill_table.py $O | sed -n '/### NFE 2 students/,/### Validation/p' | sed '$d'; done; } >> $D/tables.md
du -sh $D
