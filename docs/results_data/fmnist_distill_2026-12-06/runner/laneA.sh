#!/usr/bin/env bash
# lane A (restarted 11:59 to split the train cache over both lanes): wait for val.npy (started 11:56:29 by
# `caches val` as pid 5796), train_a, then (with train_b) the concatenated train.npy, then the sparse pilot
cd /work/wt/exp
T=/work/runs/exp/teacher.safetensors; O=/work/runs/exp/fm
X="nice -n 5 tools/fmnist_distill.sh $T $O"
while kill -0 5796 2>/dev/null; do sleep 5; done
[ -f $O/val.npy ] || exit 1
grep -q "^val.npy," $O/caches.csv || echo "val.npy,256,3000,2,4,4,$(( $(stat -c %Y $O/val.npy) - $(date -d '2026-12-06 11:56:29' +%s) ))" >> $O/caches.csv
$X caches train_a || exit 1
while ! grep -q "^train_b.npy," $O/caches.csv; do sleep 5; done
$X caches train || exit 1
AUTO_STOP=1 $X student n2_k1_s0 k1 0 ${CAP:-2000}
echo laneA pilot done
