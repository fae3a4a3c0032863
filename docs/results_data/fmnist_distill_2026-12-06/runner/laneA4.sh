#!/usr/bin/env bash
# lane A: after the sparse pilot (laneA3), the lane-A queue
while pgrep -f laneA3.sh > /dev/null; do sleep 5; done
/work/runs/exp/queue.sh /work/runs/exp/queueA.txt
