#!/usr/bin/env bash
# Issue 17's analyses of a final multi-level model, beyond the paper:
#   lesions      the single-block lesion study of the final 8-8-8 model, each lesioned network
#                scored as is and after BN recalibration (`mlres-eval lesion --recalibrate-bn`):
#                how much of a lesion's damage is stale BN statistics rather than the function
#                change h·F(Y_j) of the paper's Eq. 8;
#   coarsening   8-8-8 → 4-4-4 → 2-2-2 by `mlres-surgery coarsen` (--merge keep and average, each
#                recalibrated), against the trained first-cycle 2-2-2 of the same run (cycle-0.h5)
#                and against dropping the same number of blocks at random (`lesion --mode drop-k`,
#                recalibrated too): test error and inference images/s (`mlres-train bench --mode
#                infer`, batch 100).
#
#   scripts/beyond-paper.sh RUN_DIR --dataset D [--data-dir DIR] [--batches N] [--train-subset N]
#                           [--test-subset N] [--seeds N] [--threads N] [--out DIR]
#
# RUN_DIR is an mlres-train run folder of a multi-level run (last.h5 = 8-8-8, cycle-0.h5 = the
# first cycle's 2-2-2). Prints Markdown tables (also OUT/beyond-paper.md). MLRES_BIN: a folder
# holding built mlres-train, mlres-surgery and mlres-eval (default: swift build -c release).
# Exit status: 0 done; 64 bad arguments; otherwise the failing tool's status.
set -euo pipefail
cd "$(dirname "$0")/.."
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
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
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
if [ -z "${MLRES_BIN:-}" ]; then
    swift build -c release >/dev/null
fi
BIN=${MLRES_BIN:-$(swift build -c release --show-bin-path)}

data=(--dataset "$dataset" --threads "$threads")
[ -n "$data_dir" ] && data+=(--data-dir "$data_dir")
scoreflags=("${data[@]}")
[ -n "$test_subset" ] && scoreflags+=(--test-subset "$test_subset")
recal=(--batches "$batches")
[ -n "$train_subset" ] && recal+=(--train-subset "$train_subset")
lesionrecal=(--recalibrate-bn "$batches")
[ -n "$train_subset" ] && lesionrecal+=(--train-subset "$train_subset")

echo "beyond-paper: single-block lesions of $run/last.h5, plain and recalibrated" >&2
"$BIN/mlres-eval" lesion "$run/last.h5" --mode single "${scoreflags[@]}" "${lesionrecal[@]}" --json > "$out/lesion-single.json"

echo "beyond-paper: coarsening and random drops" >&2
for merge in keep average; do
    "$BIN/mlres-surgery" coarsen "$run/last.h5" --merge "$merge" -o "$out/c444-$merge.h5" --force >/dev/null
    "$BIN/mlres-surgery" coarsen "$out/c444-$merge.h5" --merge "$merge" -o "$out/c222-$merge.h5" --force >/dev/null
    for n in c444 c222; do
        "$BIN/mlres-train" recalibrate "$out/$n-$merge.h5" "${data[@]}" "${recal[@]}" -o "$out/$n-$merge.bn.h5" --force >/dev/null
    done
done
"$BIN/mlres-train" recalibrate "$run/last.h5" "${data[@]}" "${recal[@]}" -o "$out/final.bn.h5" --force >/dev/null
for f in "$run/last.h5" "$out/final.bn.h5" "$run/cycle-0.h5" "$out"/c444-*.h5 "$out"/c222-*.h5; do
    "$BIN/mlres-eval" score "$f" "${scoreflags[@]}" --json > "$out/$(basename "$(dirname "$f")")-$(basename "$f" .h5).score.json"
done
"$BIN/mlres-eval" lesion "$run/last.h5" --mode drop-k --k 12,18 --seeds "$seeds" "${scoreflags[@]}" "${lesionrecal[@]}" --json > "$out/drop-k.json"
read -r shape classes widths < <("$BIN/mlres-surgery" inspect "$run/last.h5" --json | python3 -c \
    "import json,sys; d=json.load(sys.stdin); print(','.join(map(str, d['input_shape'])), d['num_classes'], ','.join(map(str, d['widths'])))")
for b in 8-8-8 4-4-4 2-2-2; do
    "$BIN/mlres-train" bench --mode infer --blocks "$b" --batch 100 --steps 20 --threads "$threads" \
        --input-shape "$shape" --classes "$classes" --widths "$widths" \
        --json > "$out/bench-$b.json"
done

python3 - "$out" "$run" "$batches" "$seeds" <<'EOF' | tee "$out/beyond-paper.md"
import glob, json, os, statistics, sys
out, run, batches, seeds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rn = os.path.basename(os.path.normpath(run))
def score(name):
    with open(os.path.join(out, name + ".score.json"), encoding="utf-8") as f:
        return json.load(f)["results"][0]["error"]
def ips(b):
    with open(os.path.join(out, f"bench-{b}.json"), encoding="utf-8") as f:
        return json.load(f)["images_per_s"]
with open(os.path.join(out, "lesion-single.json"), encoding="utf-8") as f:
    les = json.load(f)
print(f"## Single-block lesions of {run}/last.h5 (BN recalibration from {batches} training batches)\n")
print(json.dumps({k: v for k, v in les.items() if not isinstance(v, list)})[:400] + "\n")
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
with open(os.path.join(out, "drop-k.json"), encoding="utf-8") as f:
    drop = json.load(f)
drows = [r for r in drop["rows"] if r.get("error") is not None]
def dropped(k, key):
    xs = [r[key] for r in drows if r.get("k") == k]
    return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0, len(xs)) if xs else None
print(f"## Coarsening {rn}: 8-8-8 → 4-4-4 → 2-2-2\n")
print("| network | blocks | test error (%) | recalibrated (%) | inference images/s (batch 100) |")
print("|---|---|---|---|---|")
base = os.path.basename(os.path.normpath(out))
print(f"| final multi-level model | 8-8-8 | {100 * score(rn + '-last'):.2f} | {100 * score(base + '-final.bn'):.2f} | {ips('8-8-8'):.0f} |")
for merge in ("keep", "average"):
    for n, b in (("c444", "4-4-4"), ("c222", "2-2-2")):
        print(f"| coarsen --merge {merge} | {b} | {100 * score(f'{base}-{n}-{merge}'):.2f} | {100 * score(f'{base}-{n}-{merge}.bn'):.2f} | {ips(b):.0f} |")
for k, b in ((12, "4-4-4 blocks' count"), (18, "2-2-2 blocks' count")):
    p, q = dropped(k, "error"), dropped(k, "error_recalibrated")
    if p:
        print(f"| {k} random blocks dropped ({p[2]} seeds, mean ± std) | {b} | {100 * p[0]:.2f} ± {100 * p[1]:.2f} | "
              + (f"{100 * q[0]:.2f} ± {100 * q[1]:.2f}" if q else "—") + " | — |")
print(f"| trained first-cycle model (cycle-0.h5) | 2-2-2 | {100 * score(rn + '-cycle-0'):.2f} | — | {ips('2-2-2'):.0f} |")
EOF
