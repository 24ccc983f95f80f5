#!/usr/bin/env bash
# The main job on a small embedded default: build, create a network checkpoint and inspect it.
# (Grows with the trainer: multi-level training, scoring and a lesion study.)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
swift build -c release --product mlres-train
swift build -c release --product mlres-surgery
BIN=$(swift build -c release --show-bin-path)
"$BIN/mlres-train" init --blocks 2-2-2 --widths 16,32,64 --classes 10 --input-shape 1,28,28 \
    --seed 0 -o "$OUT/init.h5" --force
"$BIN/mlres-surgery" inspect "$OUT/init.h5"
echo "demo: outputs in $OUT/"
