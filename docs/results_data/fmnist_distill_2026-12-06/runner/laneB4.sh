#!/usr/bin/env bash
# lane B (13:15, rebalanced, see laneA6.sh)
while kill -0 18130 2>/dev/null; do sleep 5; done
/work/runs/exp/queue.sh /work/runs/exp/queueB3.txt
