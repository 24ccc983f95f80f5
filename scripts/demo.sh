#!/usr/bin/env bash
# The main job on a small embedded default, end to end, in a few minutes:
#   init a 2-2-2 network → multi-level training on a slice of Fashion-MNIST with two
#   interpolations (2-2-2 → 4-4-4 → 8-8-8, h 1 → 0.5 → 0.25, a cosine LR cycle each) →
#   inspect the checkpoint's lineage → score it on the test slice → a lesion study with figures.
# Fashion-MNIST comes from Debian's dataset-fashion-mnist (scripts/setup.sh installs it); where
# it is missing, the small fixture set in fixtures/datasets/fashion-mnist is used instead.
# Settings (environment): OUT (default out/demo), TRAIN_SUBSET (5000), TEST_SUBSET (1000),
# EPOCHS (9), AT (3,6), THREADS (all cores). Measured on this 2-core AVX2 machine kind, quiet,
# 2026-11-30 (after the AVX2 stem fix, docs/performance.md): the whole demo takes 4.0 min after
# the build, its training 2.8 min (Σ epochs 165 s), ending at 14.2% test error (2-2-2 21.8% →
# 4-4-4 19.3% → 8-8-8 14.2%; a linear model gets about 16% on Fashion-MNIST). Before the fix the
# training took 5.4 min.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/demo}
TRAIN_SUBSET=${TRAIN_SUBSET:-5000}; TEST_SUBSET=${TEST_SUBSET:-1000}; EPOCHS=${EPOCHS:-9}; AT=${AT:-3,6}
mkdir -p "$OUT"
data=(--dataset fashion-mnist)
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "demo: dataset-fashion-mnist not installed; using the fixture set in fixtures/datasets/fashion-mnist" >&2
    data+=(--data-dir fixtures/datasets/fashion-mnist)
    TRAIN_SUBSET=$(( TRAIN_SUBSET > 200 ? 200 : TRAIN_SUBSET )); TEST_SUBSET=$(( TEST_SUBSET > 100 ? 100 : TEST_SUBSET ))
fi
threads=(); [ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")

echo "== building (release)"
swift build -c release --product mlres-train >/dev/null
swift build -c release --product mlres-surgery >/dev/null
swift build -c release --product mlres-eval >/dev/null
BIN=$(swift build -c release --show-bin-path)

echo "== 1. a fresh 2-2-2 network (ResNet-14, every h = 1)"
"$BIN/mlres-train" init --blocks 2-2-2 --widths 16,32,64 --classes 10 --input-shape 1,28,28 \
    --seed 0 -o "$OUT/init.h5" --force

echo "== 2. multi-level training: $EPOCHS epochs, interpolating after epochs $AT"
"$BIN/mlres-train" --resume "$OUT/init.h5" "${data[@]}" --train-subset "$TRAIN_SUBSET" \
    --test-subset "$TEST_SUBSET" --epochs "$EPOCHS" --interpolate-at "$AT" --out "$OUT/run" "${threads[@]}"

echo "== 3. the trained checkpoint tells its own history"
"$BIN/mlres-surgery" inspect "$OUT/run/last.h5"

echo "== 4. score on the test slice"
"$BIN/mlres-eval" score "$OUT/run/last.h5" "${data[@]}" --test-subset "$TEST_SUBSET" "${threads[@]}"

echo "== 5. lesion study (remove each block, shuffle, drop k) and residual norms, with figures"
MLRES_EVAL="$BIN/mlres-eval" SEEDS=2 KS=1,2 bash scripts/lesion-study.sh "$OUT/run/last.h5" fashion-mnist \
    "$OUT/lesion" "${data[@]:2}" --test-subset "$TEST_SUBSET" "${threads[@]}"
if python3 -c "import matplotlib" >/dev/null 2>&1; then
    python3 scripts/plot.py curves "$OUT/run/metrics.jsonl" --title "multi-level demo" -o "$OUT/curves.png"
fi

echo
echo "demo: done. Outputs in $OUT/:"
echo "  run/last.h5, run/cycle-{0,1,2}.h5   checkpoints (mlres-surgery inspect FILE)"
echo "  run/metrics.jsonl                   per-epoch metrics; curves.png"
echo "  lesion/*.json, lesion/*.png         lesion study and residual norms with figures"
