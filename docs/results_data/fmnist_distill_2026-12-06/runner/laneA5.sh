#!/usr/bin/env bash
# lane A (12:36): the sparse pilot had stopped at 700 (best at 300), the K=4 one at 1400 (best at 1000): S = 1000,
# so the sparse seed-0 student is extended to 1000 like the others; after the running n2_k1_s1 task (pid 28493)
while kill -0 28493 2>/dev/null; do sleep 5; done
/work/runs/exp/queue.sh /work/runs/exp/queueA2.txt
