#!/usr/bin/env bash
# Issue 17's analyses of a final multi-level model, beyond the paper:
#   lesions      the single-block lesion study of the final 8-8-8 model, each lesioned network
#                scored as is and after BN recalibration (`mlres-eval lesion --recalibrate-bn`):
#                how much of a lesion's damage is stale BN statistics rather than the function
#                change h·F(Y_j) of the paper's Eq. 8;
#   coarsening   scripts/coarsen.sh on the final model, compared with the trained first-cycle 2-2-2
#                of the same run (cycle-0.h5) and with random drops of as many blocks.
#
#   scripts/beyond-paper.sh RUN_DIR --dataset D [--data-dir DIR] [--batches N] [--train-subset N]
#                           [--test-subset N] [--seeds N] [--threads N] [--out DIR]
#
# RUN_DIR is an mlres-train run folder of a multi-level run (last.h5 = 8-8-8, cycle-0.h5 = the
# first cycle's 2-2-2). Prints Markdown tables (also OUT/beyond-paper.md) and draws
# OUT/lesion-recalibrated.png and OUT/error_speed.png. MLRES_BIN: a folder
# holding built mlres-train, mlres-surgery and mlres-eval (default: swift build -c release).
# Exit status: 0 done; 64 bad arguments; otherwise the failing tool's status.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
run="" dataset="" data_dir="" batches=20 train_subset="" test_subset="" seeds=3 threads=2 out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dataset) dataset=$2; shift 2 ;;
        --data-dir) data_dir=$2; shift 2 ;;
        --batches) batches=$2; shift 2 ;;
        --train-subset) train_subset=$2; shift 2 ;;
        --test-subset) test_subset=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) script_help "$0"; exit 0 ;;
        -*) echo "beyond-paper.sh: unknown option '$1' (see --help)" >&2; exit 64 ;;
        *) [ -z "$run" ] || { echo "beyond-paper.sh: one RUN_DIR only (got '$run' and '$1')" >&2; exit 64; }; run=$1; shift ;;
    esac
done
[ -n "$run" ] && [ -n "$dataset" ] || { echo "beyond-paper.sh: give RUN_DIR and --dataset (see --help)" >&2; exit 64; }
for f in "$run/last.h5" "$run/cycle-0.h5"; do
    [ -f "$f" ] || { echo "beyond-paper.sh: $f is missing (RUN_DIR must be a multi-level run folder)" >&2; exit 64; }
done
out=${out:-$run/beyond-paper}
mkdir -p "$out"
mlres_bin beyond-paper mlres-train mlres-surgery mlres-eval

data=(--dataset "$dataset" --threads "$threads")
[ -n "$data_dir" ] && data+=(--data-dir "$data_dir")
scoreflags=("${data[@]}")
[ -n "$test_subset" ] && scoreflags+=(--test-subset "$test_subset")
lesionrecal=(--recalibrate-bn "$batches")
[ -n "$train_subset" ] && lesionrecal+=(--train-subset "$train_subset")

echo "beyond-paper: single-block lesions of $run/last.h5, plain and recalibrated" >&2
"$BIN/mlres-eval" lesion "$run/last.h5" --mode single "${scoreflags[@]}" "${lesionrecal[@]}" --json > "$out/lesion-single.json"

echo "beyond-paper: coarsening (scripts/coarsen.sh)" >&2
coarsenflags=(--dataset "$dataset" --batches "$batches" --seeds "$seeds" --threads "$threads" --compare "$run/cycle-0.h5" --out "$out/coarsen")
[ -n "$data_dir" ] && coarsenflags+=(--data-dir "$data_dir")
[ -n "$train_subset" ] && coarsenflags+=(--train-subset "$train_subset")
[ -n "$test_subset" ] && coarsenflags+=(--test-subset "$test_subset")
bash scripts/coarsen.sh "$run/last.h5" "${coarsenflags[@]}" > /dev/null

python3 - "$out" "$run" "$batches" "$seeds" <<'EOF' | tee "$out/beyond-paper.md"
import json, os, statistics, sys
out, run, batches, seeds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
with open(os.path.join(out, "lesion-single.json"), encoding="utf-8") as f:
    les = json.load(f)
print(f"## Single-block lesions of {run}/last.h5 (BN recalibration from {batches} training batches)\n")
rows = [r for r in les["rows"] if r.get("error") is not None]
print(f"Intact: {100 * les['intact_error']:.2f}% (recalibrated: {100 * les['intact_error_recalibrated']:.2f}%); "
      f"{les['images']} test images; recalibration: {les['recalibration']['batches']} batches of "
      f"{les['recalibration']['batch_size']}, {les['recalibration']['statistics']}.\n")
print("| lesion | error (%) | Δ (points) | error recalibrated (%) | Δ recalibrated (points) | share of Δ removed by recalibration |")
print("|---|---|---|---|---|---|")
shares = []
for r in rows:
    d, dr = r["delta_error"], r["delta_error_recalibrated"]
    share = ""
    if d > 0.002:
        shares.append(1 - dr / d); share = f"{100 * (1 - dr / d):.0f}%"
    print(f"| {r['label']} ({'+'.join(r['actions'])}) | {100 * r['error']:.2f} | {100 * d:+.2f} | "
          f"{100 * r['error_recalibrated']:.2f} | {100 * dr:+.2f} | {share} |")
if shares:
    print(f"\nOver the {len(shares)} lesions that cost more than 0.2 points: recalibration removes a median "
          f"{100 * statistics.median(shares):.0f}% of the damage (range {100 * min(shares):.0f}% to {100 * max(shares):.0f}%).")
print(f"Mean Δ over all {len(rows)} lesions: {100 * statistics.mean(r['delta_error'] for r in rows):+.2f} points plain, "
      f"{100 * statistics.mean(r['delta_error_recalibrated'] for r in rows):+.2f} recalibrated.\n")
with open(os.path.join(out, "coarsen", "coarsen.md"), encoding="utf-8") as f:
    print(f.read())
EOF

# Figures: the lesion curve plain and recalibrated; test error against inference speed of the
# recalibrated coarsened networks, the final model and the compared checkpoints.
python3 scripts/plot.py lesion "$out/lesion-single.json" -o "$out/lesion-recalibrated.png" >&2
python3 scripts/plot.py error-speed "$out"/coarsen/*.bn.score.json -o "$out/error_speed.png" >&2
