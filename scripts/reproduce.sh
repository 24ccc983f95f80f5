#!/usr/bin/env bash
# The paper's Table 3 protocol on real data, on this machine:
#   multi-level   2-2-2 (h=1) → 4-4-4 (h=0.5) → 8-8-8 (h=0.25), interpolating at 60 and 110 of 160
#                 epochs (or the same fractions of a shorter schedule),
#   first-cycle   2-2-2 trained throughout with the same cyclic learning rate (--restart-at),
#   last-cycle    8-8-8 trained throughout with the same cyclic learning rate (--restart-at),
# all with the same steps, batch and seed; then a table of test error and training time, the time
# multi-level saves against the last-cycle model and against the paper's Table 2 theory, and a
# lesion study + residual norms (with figures) of the final models.
#
#   scripts/reproduce.sh [--dataset fashion-mnist|cifar10|cifar100|stl10] [--data-dir DIR]
#                        [--scale quick|full] [--seeds N] [--threads N] [--out DIR]
#                        [--policies paper,preserve,identity,preserve-identity] [--recalibrate-bn N]
#                        [--no-analysis] [--only MODEL,MODEL...]
#
# Issue 17 rows: --policies adds a multi-level run per interpolation policy (paper: the paper's
#   rule, the plain multi-level row; preserve: --h-policy preserve; identity: --first-block
#   identity; preserve-identity: both), same seeds and data order; --recalibrate-bn N adds, for
#   each policy, a run with BN recalibration from N training batches after each interpolation.
#   The table then gets a row per run and the jump at each interpolation (test error before,
#   right after, and after recalibration, from the runs' metrics.jsonl). --no-analysis skips the
#   lesion study, norms and figures. --only runs just the named models (e.g.
#   multilevel,multilevel-preserve-bn,lastcycle; the table marks the others "not run"); a model
#   whose OUT/seedS/MODEL.score.json exists is not run again (delete it to rerun).
#
# quick (the default) on fashion-mnist: a 10,000-image training subset (first images of the
#   official training file), the full 10,000-image test set, 16 epochs with cycles at 6 and 11
#   (60/160 and 110/160 rounded), batch 100; about 15 minutes per seed on 2 cores.
# full: the paper's schedule, the whole dataset, 160 epochs, cycles at 60 and 110.
# Environment overrides: TRAIN_SUBSET, TEST_SUBSET, EPOCHS, AT (e.g. 6,11), WIDTHS, BATCH.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
dataset=fashion-mnist data_dir="" scale=quick seeds=1 threads=2 out="" policies="" recal="" analysis=1 only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dataset) dataset=$2; shift 2 ;;
        --data-dir) data_dir=$2; shift 2 ;;
        --scale) scale=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --policies) policies=$2; shift 2 ;;
        --recalibrate-bn) recal=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --no-analysis) analysis=0; shift ;;
        -h|--help) script_help "$0"; exit 0 ;;
        *) echo "reproduce.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
done
case "$scale" in
    quick) EPOCHS=${EPOCHS:-16}; AT=${AT:-6,11}; TRAIN_SUBSET=${TRAIN_SUBSET:-10000}; TEST_SUBSET=${TEST_SUBSET:-} ;;
    full)  EPOCHS=${EPOCHS:-160}; AT=${AT:-60,110}; TRAIN_SUBSET=${TRAIN_SUBSET:-}; TEST_SUBSET=${TEST_SUBSET:-} ;;
    *) echo "reproduce.sh: --scale must be quick or full (got '$scale')" >&2; exit 64 ;;
esac
case "$seeds" in ''|*[!0-9]*|0) echo "reproduce.sh: --seeds must be a positive integer (got '$seeds')" >&2; exit 64 ;; esac
case "$recal" in *[!0-9]*|0*) echo "reproduce.sh: --recalibrate-bn must be a positive integer (got '$recal')" >&2; exit 64 ;; esac
# The multi-level variants: "multilevel" (paper, no recalibration) always; one per extra policy
# (multilevel-POLICY) and, with --recalibrate-bn, one per policy with it (multilevel-POLICY-bn).
variants=(multilevel)
for p in ${policies//,/ }; do
    case "$p" in
        paper) ;;
        preserve|identity|preserve-identity) variants+=("multilevel-$p") ;;
        *) echo "reproduce.sh: unknown policy '$p' (paper, preserve, identity, preserve-identity)" >&2; exit 64 ;;
    esac
    [ -n "$recal" ] && variants+=("multilevel-$p-bn")
done
[ -n "$recal" ] && [ -z "$policies" ] && variants+=("multilevel-paper-bn")
WIDTHS=${WIDTHS:-16,32,64}
out=${out:-out/reproduce-$dataset-$scale}
mkdir -p "$out"

# MLRES_BIN: a folder holding built mlres-train and mlres-eval
mlres_bin reproduce mlres-train mlres-eval

common=(--dataset "$dataset" --epochs "$EPOCHS" --widths "$WIDTHS" --threads "$threads" --log-format json)
[ -n "$data_dir" ] && common+=(--data-dir "$data_dir")
[ -n "$TRAIN_SUBSET" ] && common+=(--train-subset "$TRAIN_SUBSET")
[ -n "$TEST_SUBSET" ] && common+=(--test-subset "$TEST_SUBSET")
[ -n "${BATCH:-}" ] && common+=(--batch "$BATCH")
evalflags=(--dataset "$dataset" --threads "$threads")
[ -n "$data_dir" ] && evalflags+=(--data-dir "$data_dir")
[ -n "$TEST_SUBSET" ] && evalflags+=(--test-subset "$TEST_SUBSET")

# The three models of Table 3, per seed, alternating so that machine noise spreads evenly.
for ((s = 0; s < seeds; s++)); do
    for model in "${variants[@]}" lastcycle firstcycle; do
        case $model in
            multilevel*)
                flags=(--blocks 2-2-2 --interpolate-at "$AT")
                case $model in
                    multilevel-preserve-identity*) flags+=(--h-policy preserve --first-block identity) ;;
                    multilevel-preserve*) flags+=(--h-policy preserve) ;;
                    multilevel-identity*) flags+=(--first-block identity) ;;
                esac
                case $model in *-bn) flags+=(--recalibrate-bn "$recal") ;; esac ;;
            lastcycle)  flags=(--blocks 8-8-8 --restart-at "$AT") ;;
            firstcycle) flags=(--blocks 2-2-2 --restart-at "$AT") ;;
        esac
        run="$out/seed$s/$model"
        if [ -n "$only" ] && [[ ",$only," != *",$model,"* ]]; then continue; fi
        if [ -f "$run.score.json" ]; then echo "reproduce: seed $s, $model: done before ($run.score.json)" >&2; continue; fi
        echo "reproduce: seed $s, $model: mlres-train ${common[*]} ${flags[*]} --seed $s --out $run" >&2
        mkdir -p "$out/seed$s"
        load0=$(cut -d' ' -f1 /proc/loadavg)
        start=$(date +%s.%N)
        "$BIN/mlres-train" "${common[@]}" "${flags[@]}" --seed "$s" --out "$run" --force > "$run.log"
        end=$(date +%s.%N)
        # Whole-process seconds and the load average before/after (other processes distort times).
        python3 -c "import json,sys; json.dump({'process_seconds': float(sys.argv[2]) - float(sys.argv[1]), 'loadavg_before': sys.argv[4], 'loadavg_after': open('/proc/loadavg').read().split()[0]}, open(sys.argv[3], 'w'))" \
            "$start" "$end" "$run.time.json" "$load0"
        "$BIN/mlres-eval" score "$run/last.h5" "${evalflags[@]}" --json > "$run.score.json"
    done
done

table=(python3 scripts/reproduce_table.py "$out" --seeds "$seeds" --epochs "$EPOCHS" --at "$AT"
    --dataset "$dataset" --scale "$scale" --threads "$threads"
    --train-subset "${TRAIN_SUBSET:-all}" --test-subset "${TEST_SUBSET:-all}"
    --variants "$(IFS=,; echo "${variants[*]}")" --recalibrate-bn "${recal:-0}")
if [ "$analysis" = 0 ]; then
    "${table[@]}" | tee "$out/results.md"
    echo "reproduce: table in $out/results.md (--no-analysis: no lesion study, norms or figures)" >&2
    exit 0
fi

# Lesion study and norms of the final models of seed 0, with figures.
MLRES_EVAL="$BIN/mlres-eval" SEEDS=${LESION_SEEDS:-5} bash scripts/lesion-study.sh \
    "$out/seed0/multilevel/last.h5" "$dataset" "$out/lesion-multilevel" "${evalflags[@]:2}"
MLRES_EVAL="$BIN/mlres-eval" SEEDS=${LESION_SEEDS:-5} bash scripts/lesion-study.sh \
    "$out/seed0/lastcycle/last.h5" "$dataset" "$out/lesion-lastcycle" "${evalflags[@]:2}"
# Norms of the multi-level chain (2-2-2 → 4-4-4 → 8-8-8): gamma against depth, ||F|| against t.
chain=()
for k in 0 1 2; do
    f="$out/seed0/multilevel/cycle-$k.h5"
    [ -f "$f" ] || continue
    "$BIN/mlres-eval" norms "$f" "${evalflags[@]}" --json > "$out/norms-cycle-$k.json"
    chain+=("$out/norms-cycle-$k.json")
done
python3 scripts/plot.py gamma "${chain[@]}" -o "$out/gamma.png"
python3 scripts/plot.py f-vs-t "${chain[@]}" -o "$out/f_vs_t.png"
python3 scripts/plot.py curves "$out/seed0/multilevel/metrics.jsonl" --title "multi-level, $dataset ($scale)" \
    -o "$out/curves-multilevel.png"
python3 scripts/plot.py curves "$out/seed0/lastcycle/metrics.jsonl" --title "last-cycle 8-8-8, $dataset ($scale)" \
    -o "$out/curves-lastcycle.png"

"${table[@]}" | tee "$out/results.md"
echo "reproduce: table in $out/results.md, figures in $out/*.png and $out/lesion-*/" >&2
