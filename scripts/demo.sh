#!/usr/bin/env bash
# The main job on a small embedded default: build, create a network checkpoint, interpolate it
# twice (2-2-2 → 4-4-4 → 8-8-8, the paper's multi-level step), inspect the lineage, verify.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
swift build -c release --product mlres-train >/dev/null
swift build -c release --product mlres-surgery >/dev/null
BIN=$(swift build -c release --show-bin-path)
"$BIN/mlres-train" init --blocks 2-2-2 --widths 16,32,64 --classes 10 --input-shape 1,28,28 \
    --seed 0 -o "$OUT/net.2-2-2.h5" --force
"$BIN/mlres-surgery" interpolate "$OUT/net.2-2-2.h5" -o "$OUT/net.4-4-4.h5" --force
"$BIN/mlres-surgery" interpolate "$OUT/net.4-4-4.h5" -o "$OUT/net.8-8-8.h5" --force
"$BIN/mlres-surgery" inspect "$OUT/net.8-8-8.h5"
"$BIN/mlres-surgery" verify "$OUT/net.8-8-8.h5"
echo "demo: outputs in $OUT/"
