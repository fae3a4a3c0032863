#!/usr/bin/env bash
# Calibration of the sample-quality numbers (docs/fmnist.md "Sample quality"):
# FD-CLF (bdense eval --features) and FD-RF floors and noise ladders on
# Fashion-MNIST.  Usage: tools/metric_calibration.sh FEATURES.safetensors [DIR] [BIN]
# Prints one markdown table row per measurement.
set -eu
feat=${1:?usage: tools/metric_calibration.sh FEATURES.safetensors [DIR] [BIN]}
dir=${2:-/usr/share/datasets/fashion-mnist}
bin=${3:-build/bdense}
n=2000
row() { # label, then eval options
  local label=$1; shift
  local out; out=$("$bin" eval --threads 2 --quiet "$@" | tail -n 1)
  echo "| $label | $out |"
}
echo "| images (FD-CLF, n = $n) | result |"
echo "|---|---|"
row "test[2000:4000] vs test[0:2000] (floor)" --features "$feat" --real fmnist-test:$dir --skip 2000 --n $n --data fmnist-test:$dir --ref-n $n
row "test[4000:6000] vs test[0:2000] (floor)" --features "$feat" --real fmnist-test:$dir --skip 4000 --n $n --data fmnist-test:$dir --ref-n $n
row "train[0:2000] vs test[0:2000]" --features "$feat" --real fmnist:$dir --n $n --data fmnist-test:$dir --ref-n $n
for s in 0.05 0.1 0.2; do
  row "test[2000:4000] + noise std $s" --features "$feat" --real fmnist-test:$dir --skip 2000 --n $n --noise $s --data fmnist-test:$dir --ref-n $n
done
row "2000 built-in shapes (another data set)" --features "$feat" --real builtin:28 --n $n --data fmnist-test:$dir --ref-n $n
echo
echo "| images (FD-RF) | result |"
echo "|---|---|"
for m in 500 1000 2000; do
  row "train[0:$m] vs all 10000 test (floor)" --real fmnist:$dir --n $m --data fmnist-test:$dir --ref-n 10000
done
row "test[2000:4000] vs test[0:2000] (floor)" --real fmnist-test:$dir --skip 2000 --n $n --data fmnist-test:$dir --ref-n $n
for s in 0.05 0.1 0.2; do
  row "test[2000:4000] + noise std $s vs test[0:2000]" --real fmnist-test:$dir --skip 2000 --n $n --noise $s --data fmnist-test:$dir --ref-n $n
done
