#!/usr/bin/env bash
# Pictures and numbers for docs/fmnist.md from a trained Fashion-MNIST teacher:
#   - its loss curve (copied from <teacher>.loss.png / .csv)
#   - 64-sample grids, same noise, at several sampler/step settings
#   - FD-RF (bdense eval) of EVAL_N samples against the 10k test images, per setting,
#     plus the floor (EVAL_N training images) for scale
# Writes docs/fmnist/*.png and docs/fmnist/table.md (paste into docs/fmnist.md).
# Usage: tools/fmnist_report.sh TEACHER.safetensors [BUILD_DIR]
#   FMNIST_DIR (default /usr/share/datasets/fashion-mnist), EVAL_N (500), SETTINGS
#   ("dpmpp2m:10 dpmpp2m:25 ddim:10 ddim:25 heun:13 euler:25 ddpm:50"; heun:13 = 24 NFE)
set -euo pipefail
teacher=${1:?usage: tools/fmnist_report.sh TEACHER.safetensors [BUILD_DIR]}
build=${2:-build}
bd="$build/bdense"
dir=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
n=${EVAL_N:-500}
settings=${SETTINGS:-"dpmpp2m:10 dpmpp2m:25 ddim:10 ddim:25 heun:13 euler:25 ddpm:50"}
out=docs/fmnist
mkdir -p "$out" out/fmnist
base=${teacher%.safetensors}
[ -f "$base.loss.png" ] && cp "$base.loss.png" "$out/loss.png"
[ -f "$base.loss.csv" ] && cp "$base.loss.csv" "$out/loss.csv"
"$bd" info --ckpt "$teacher" > "$out/info.txt"

{
  echo "| sampler | steps | NFE | FD-RF (n=$n vs 10k test) | ms/image |"
  echo "|---|---|---|---|---|"
} > "$out/table.md"
for s in $settings; do
  sampler=${s%%:*}; steps=${s##*:}
  "$bd" sample --ckpt "$teacher" --n 64 --sampler "$sampler" --steps "$steps" --seed 0 \
      --grid "$out/samples_${sampler}_${steps}.png" --quiet
  log=$("$bd" eval --ckpt "$teacher" --data "fmnist-test:$dir" --n "$n" --sampler "$sampler" --steps "$steps" \
      --seed 1 --out "out/fmnist/samples_${sampler}_${steps}.npy" 2>&1 | tee /dev/stderr)
  fd=$(echo "$log" | sed -n 's/^FD-RF \([0-9.]*\).*/\1/p' | tail -1)
  nfe=$(echo "$log" | sed -n 's/.* \([0-9]*\) NFE.*/\1/p' | tail -1)
  ms=$(echo "$log" | sed -n 's/.*(\([0-9.]*\) ms\/image).*/\1/p' | tail -1)
  echo "| $sampler | $steps | ${nfe:-?} | $fd | ${ms:-?} |" >> "$out/table.md"
done
echo >> "$out/table.md"
echo "Reference points (same n):" >> "$out/table.md"
"$bd" eval --data "fmnist-test:$dir" --real "fmnist:$dir" --n "$n" \
    | sed 's/^/    the first training images (the floor): /' >> "$out/table.md"
cat "$out/table.md"
