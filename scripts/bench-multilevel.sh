#!/bin/sh
# The paper's speed claim on a Fashion-MNIST subset: the multi-level run 2-2-2 → 4-4-4 → 8-8-8
# (interpolated at 60 and 110 of 160 epochs, scaled down to EPOCHS) against the 8-8-8 network
# trained for the same steps with the same batch and the same cyclic learning rate
# (--restart-at the same epochs). Both runs are whole `mlres-train` processes, so the wall
# times include everything: data loading, evaluation every epoch, checkpoints, interpolation.
#
# Theory (the paper's Table 2, cost ∝ blocks × epochs): with cycles of e0, e1, e2 epochs the
# multi-level run costs (6·e0 + 12·e1 + 24·e2) / (24·EPOCHS) of the 8-8-8 run; 60/110/160
# gives 0.5625, i.e. 43.75% saved (the paper quotes 42% for equal cycles and measured 41%).
#
# Settings (environment): SUBSET (training images, default 3000), TEST_SUBSET (500),
# EPOCHS (16), AT (6,11 — the 60/110-of-160 points scaled), BATCH (100), THREADS (2),
# WIDTHS (16,32,64), MLRES_TRAIN (binary; default: build and use .build/release/mlres-train),
# OUT (scratch folder, default a fresh mktemp -d). Needs dataset-fashion-mnist installed.
set -eu
cd "$(dirname "$0")/.."
SUBSET=${SUBSET:-3000}; TEST_SUBSET=${TEST_SUBSET:-500}; EPOCHS=${EPOCHS:-16}; AT=${AT:-6,11}
BATCH=${BATCH:-100}; THREADS=${THREADS:-2}; WIDTHS=${WIDTHS:-16,32,64}
if [ -z "${MLRES_TRAIN:-}" ]; then
    swift build -c release --product mlres-train >/dev/null
    MLRES_TRAIN=.build/release/mlres-train
fi
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
common="--dataset fashion-mnist --train-subset $SUBSET --test-subset $TEST_SUBSET --epochs $EPOCHS
        --batch $BATCH --threads $THREADS --widths $WIDTHS --seed 1"

run() {  # name, extra flags... → prints "wall cpu" seconds (cpu = user + system)
    name=$1; shift
    # shellcheck disable=SC2086
    /usr/bin/time -o "$OUT/$name.time" -f "%e %U %S" "$MLRES_TRAIN" $common --out "$OUT/$name" --force "$@" > "$OUT/$name.log"
    awk '{printf "%.1f %.1f", $1, $2 + $3}' "$OUT/$name.time"
}

echo "Fashion-MNIST subset: $SUBSET train / $TEST_SUBSET test images, batch $BATCH, $EPOCHS epochs, cycles at $AT, $THREADS threads"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
multi=$(run multilevel --blocks 2-2-2 --interpolate-at "$AT")
echo "multi-level 2-2-2 → 4-4-4 → 8-8-8: wall ${multi% *} s, cpu ${multi#* } s  ($(tail -n 1 "$OUT/multilevel.log"))"
full=$(run full888 --blocks 8-8-8 --restart-at "$AT")
echo "8-8-8 with the same LR cycles:    wall ${full% *} s, cpu ${full#* } s  ($(tail -n 1 "$OUT/full888.log"))"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "${multi% *}" "${full% *}" "$EPOCHS" "$AT" "${multi#* }" "${full#* }" <<'PY'
import sys
multi, full, epochs = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
cm, cf = float(sys.argv[5]), float(sys.argv[6])
at = [int(a) for a in sys.argv[4].split(",")]
edges = [0] + at + [epochs]
cyc = [b - a for a, b in zip(edges, edges[1:])]
blocks = [6 * 2 ** k for k in range(len(cyc))]
theory = sum(b * e for b, e in zip(blocks, cyc)) / (blocks[-1] * epochs)
print(f"saving: {100 * (1 - multi / full):.1f}% wall, {100 * (1 - cm / cf):.1f}% cpu (measured);"
      f" theory {100 * (1 - theory):.2f}% (Table 2 cost model)")
PY
echo "runs and logs in $OUT"
