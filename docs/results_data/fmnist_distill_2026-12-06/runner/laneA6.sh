#!/usr/bin/env bash
# lane A (13:15, rebalanced for the 13:45 deadline: 3 seeds of sparse and K=4 uniform first, K=4 agree seed 1 dropped)
while kill -0 8211 2>/dev/null; do sleep 5; done
/work/runs/exp/queue.sh /work/runs/exp/queueA3.txt
