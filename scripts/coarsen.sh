#!/usr/bin/env bash
# Coarsening (issue 17): the multigrid restriction of a trained deep network, measured.
# From FINAL_CKPT (e.g. the 8-8-8 RUN/last.h5 of a multi-level run) coarsen stage by stage
# 8-8-8 → 4-4-4 → 2-2-2 with `mlres-surgery coarsen --merge keep` and `--merge average`, each
# scored as is and after `mlres-train recalibrate` (N training batches): test error and
# inference images/s (mlres-eval score). Beside them, for comparison: COMPARE checkpoints (e.g.
# the trained first-cycle 2-2-2 model, RUN/cycle-0.h5) and dropping the same number of blocks at
# random (`mlres-eval lesion --mode drop-k`, SEEDS seeds, recalibrated too).
#
#   scripts/coarsen.sh FINAL_CKPT --dataset D [--data-dir DIR] [--batches N] [--batch-size B]
#                      [--levels 2] [--seeds 5] [--train-subset N] [--test-subset N] [--threads N]
#                      [--compare CKPT]... [--out DIR]
#
# Writes DIR/<merge>-<depth>.h5 (+ .bn.h5) and their scores, DIR/drop-k.json, and prints a
# Markdown table (also DIR/coarsen.md). MLRES_BIN: a folder holding built mlres-train,
# mlres-surgery and mlres-eval (default: swift build -c release). Exit: 0; 64 bad arguments;
# otherwise the failing tool's status (e.g. 2: a stage with an odd number of blocks).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
final="" dataset="" data_dir="" batches=100 batch_size="" levels=2 seeds=5 train_subset="" test_subset="" threads=2
compare=() out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dataset) dataset=$2; shift 2 ;;
        --data-dir) data_dir=$2; shift 2 ;;
        --batches) batches=$2; shift 2 ;;
        --batch-size) batch_size=$2; shift 2 ;;
        --levels) levels=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --train-subset) train_subset=$2; shift 2 ;;
        --test-subset) test_subset=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --compare) compare+=("$2"); shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) script_help "$0"; exit 0 ;;
        -*) echo "coarsen.sh: unknown option '$1' (see --help)" >&2; exit 64 ;;
        *) [ -z "$final" ] || { echo "coarsen.sh: one FINAL_CKPT only (got '$final' and '$1')" >&2; exit 64; }
           final=$1; shift ;;
    esac
done
[ -n "$final" ] || { echo "coarsen.sh: give the checkpoint to coarsen" >&2; exit 64; }
[ -n "$dataset" ] || { echo "coarsen.sh: --dataset is required" >&2; exit 64; }
for v in "$levels" "$seeds" "$batches"; do
    case "$v" in ''|*[!0-9]*|0*) echo "coarsen.sh: --levels, --seeds and --batches take positive integers (got '$v')" >&2; exit 64 ;; esac
done
out=${out:-out/coarsen}
mkdir -p "$out"
mlres_bin coarsen mlres-train mlres-surgery mlres-eval

eval_flags
lesionflags=("${scoreflags[@]}" --recalibrate-bn "$batches")
[ -n "$batch_size" ] && lesionflags+=(--recalibrate-batch-size "$batch_size")
[ -n "$train_subset" ] && lesionflags+=(--train-subset "$train_subset")

score() { "$BIN/mlres-eval" score "$1" "${scoreflags[@]}" --json > "${1%.h5}.score.json"; }
recalibrate() { "$BIN/mlres-train" recalibrate "$1" "${recalflags[@]}" -o "$2" --force >&2; }

cp "$final" "$out/final.h5"
score "$out/final.h5"
recalibrate "$out/final.h5" "$out/final.bn.h5"
score "$out/final.bn.h5"
total=$(python3 -c "import json,sys; print(sum(int(b) for b in json.load(open(sys.argv[1]))['results'][0]['blocks'].split('-')))" "$out/final.score.json")
ks=()
files=()
for merge in keep average; do
    prev="$out/final.h5"
    for ((l = 1; l <= levels; l++)); do
        f="$out/$merge-$l.h5"
        echo "coarsen: mlres-surgery coarsen $prev --merge $merge" >&2
        "$BIN/mlres-surgery" coarsen "$prev" --merge "$merge" -o "$f" --force >/dev/null
        score "$f"
        recalibrate "$f" "${f%.h5}.bn.h5"
        score "${f%.h5}.bn.h5"
        files+=("$merge-$l")
        prev=$f
    done
done
for ((l = 1; l <= levels; l++)); do ks+=($((total - total / (1 << l)))); done
for c in "${compare[@]}"; do
    name=compare-$(basename "$(dirname "$c")")-$(basename "${c%.h5}")
    cp "$c" "$out/$name.h5"
    score "$out/$name.h5"
    recalibrate "$out/$name.h5" "$out/$name.bn.h5"
    score "$out/$name.bn.h5"
    files+=("$name")
done
echo "coarsen: mlres-eval lesion --mode drop-k --k $(IFS=,; echo "${ks[*]}") --seeds $seeds --recalibrate-bn $batches" >&2
"$BIN/mlres-eval" lesion "$out/final.h5" --mode drop-k --k "$(IFS=,; echo "${ks[*]}")" --seeds "$seeds" \
    "${lesionflags[@]}" --json > "$out/drop-k.json"

python3 - "$out" "$batches" "${files[@]}" <<'EOF' | tee "$out/coarsen.md"
import json, os, statistics, sys
out, batches, names = sys.argv[1], sys.argv[2], sys.argv[3:]
def res(name):
    with open(os.path.join(out, name + ".score.json"), encoding="utf-8") as f:
        return json.load(f)["results"][0]
def pct(x):
    return "—" if x is None else f"{100 * x:.2f}"
print(f"| network | blocks | test error (%) | after BN recalibration ({batches} batches) (%) | images/s |")
print("|---|---|---|---|---|")
for name in ["final"] + names:
    r, b = res(name), res(name + ".bn")
    print(f"| {name} | {r.get('blocks', '?')} | {pct(r['error'])} | {pct(b['error'])} | {r.get('images_per_s', 0):.0f} |")
with open(os.path.join(out, "drop-k.json"), encoding="utf-8") as f:
    drop = json.load(f)
by_k = {}
for row in drop["rows"]:
    if row["error"] is not None:
        by_k.setdefault(row["k"], []).append(row)
print()
print(f"Dropping k blocks of {drop['blocks']} at random (drop-k, mean ± std over seeds):\n")
print("| k | blocks after (first seed) | test error (%) | after BN recalibration (%) | seeds |")
print("|---|---|---|---|---|")
def ms(xs):
    xs = [100 * x for x in xs]
    return f"{xs[0]:.2f}" if len(xs) == 1 else f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}"
for k in sorted(by_k):
    rows = by_k[k]
    print(f"| {k} | {rows[0]['blocks_after']} | {ms([r['error'] for r in rows])} | "
          f"{ms([r['error_recalibrated'] for r in rows])} | {len(rows)} |")
EOF
