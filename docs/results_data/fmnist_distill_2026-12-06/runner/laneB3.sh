#!/usr/bin/env bash
# lane B (12:41, rebalanced for time): after the running n2_k4gt_s0 task (pid 28549)
while kill -0 28549 2>/dev/null; do sleep 5; done
/work/runs/exp/queue.sh /work/runs/exp/queueB2.txt
