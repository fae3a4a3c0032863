#!/usr/bin/env bash
# copy the small result files into the worktree, regenerate the tables, commit that directory only (message $1)
cd /work/wt/exp
O=/work/runs/exp/fm; D=docs/results_data/fmnist_distill_2026-12-06
mkdir -p $D/logs $D/runner
for f in $O/*.csv $O/*.md $O/*.txt; do [ -f "$f" ] && cp "$f" $D/; done
for f in $O/*.log /work/runs/exp/lane*.log /work/runs/exp/queue*.log; do [ -f "$f" ] && cp "$f" $D/logs/; done
cp /work/runs/exp/lane*.sh /work/runs/exp/queue*.sh /work/runs/exp/queue*.txt /work/runs/exp/collect.sh /work/runs/exp/S $D/runner/ 2>/dev/null
/usr/bin/python3 tools/fmnist_distill_table.py $O > $D/tables.md
git add $D
[ -n "${1:-}" ] && git commit -qm "$1" -- $D && git log --oneline | head -1
