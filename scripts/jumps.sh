#!/usr/bin/env bash
# The jump of an interpolation (issue 17): from a checkpoint saved just before an interpolation
# (RUN/cycle-K.h5 of mlres-train, written at the end of cycle K before the network is
# interpolated), build the interpolated network with each policy, with and without BN
# recalibration, and print the test error before and right after (no training step):
#
#   policy              mlres-surgery interpolate flags
#   paper               --h-policy paper                       (the paper's rule, Appendix B)
#   preserve            --h-policy preserve                    (every old block keeps its Σh)
#   identity            --first-block identity                 (identity block after block 0)
#   preserve-identity   --h-policy preserve --first-block identity
#
# each scored as is and after `mlres-train recalibrate` (N training batches); the network
# before the interpolation is scored as is and recalibrated too.
#
#   scripts/jumps.sh CYCLE_CKPT [CYCLE_CKPT...] --dataset D [--data-dir DIR] [--batches N]
#                    [--batch-size B] [--seed S] [--train-subset N] [--test-subset N]
#                    [--threads N] [--policies paper,preserve,identity,preserve-identity] [--out DIR]
#
# Writes DIR/<ckpt-name>/<policy>.h5, <policy>.bn.h5, their scores (*.score.json), and prints a
# Markdown table per checkpoint (also DIR/jumps.md, DIR/jumps.json). MLRES_BIN: a folder holding
# built mlres-train, mlres-surgery and mlres-eval (default: swift build -c release).
# Exit status: 0 done; 64 bad arguments; otherwise the failing tool's status.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ckpts=() dataset="" data_dir="" batches=100 batch_size="" seed=0 train_subset="" test_subset="" threads=2
policies=paper,preserve,identity,preserve-identity out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dataset) dataset=$2; shift 2 ;;
        --data-dir) data_dir=$2; shift 2 ;;
        --batches) batches=$2; shift 2 ;;
        --batch-size) batch_size=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --train-subset) train_subset=$2; shift 2 ;;
        --test-subset) test_subset=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --policies) policies=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) script_help "$0"; exit 0 ;;
        -*) echo "jumps.sh: unknown option '$1' (see --help)" >&2; exit 64 ;;
        *) ckpts+=("$1"); shift ;;
    esac
done
[ ${#ckpts[@]} -gt 0 ] || { echo "jumps.sh: give at least one checkpoint saved before an interpolation (RUN/cycle-K.h5)" >&2; exit 64; }
[ -n "$dataset" ] || { echo "jumps.sh: --dataset is required" >&2; exit 64; }
for p in ${policies//,/ }; do
    case "$p" in paper|preserve|identity|preserve-identity) ;;
        *) echo "jumps.sh: unknown policy '$p' (paper, preserve, identity, preserve-identity)" >&2; exit 64 ;;
    esac
done
out=${out:-out/jumps}
mkdir -p "$out"
mlres_bin jumps mlres-train mlres-surgery mlres-eval

eval_flags
recalflags+=(--seed "$seed")

score() {   # score FILE → FILE.score.json
    "$BIN/mlres-eval" score "$1" "${scoreflags[@]}" --json > "${1%.h5}.score.json"
}
recalibrate() {   # recalibrate IN OUT
    "$BIN/mlres-train" recalibrate "$1" "${recalflags[@]}" -o "$2" --force >&2
}

for ck in "${ckpts[@]}"; do
    name=$(basename "$(dirname "$ck")")-$(basename "${ck%.h5}")
    dir="$out/$name"
    mkdir -p "$dir"
    cp "$ck" "$dir/before.h5"
    score "$dir/before.h5"
    recalibrate "$dir/before.h5" "$dir/before.bn.h5"
    score "$dir/before.bn.h5"
    for p in ${policies//,/ }; do
        case "$p" in
            paper) flags=(--h-policy paper) ;;
            preserve) flags=(--h-policy preserve) ;;
            identity) flags=(--first-block identity) ;;
            preserve-identity) flags=(--h-policy preserve --first-block identity) ;;
        esac
        echo "jumps: $ck: $p: mlres-surgery interpolate ${flags[*]}" >&2
        "$BIN/mlres-surgery" interpolate "$dir/before.h5" "${flags[@]}" -o "$dir/$p.h5" --force >/dev/null
        score "$dir/$p.h5"
        recalibrate "$dir/$p.h5" "$dir/$p.bn.h5"
        score "$dir/$p.bn.h5"
    done
done

python3 - "$out" "$batches" "$policies" "${ckpts[@]}" <<'EOF' | tee "$out/jumps.md"
import json, os, sys
out, batches, policies, ckpts = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4:]
def err(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)["results"][0]["error"]
doc = []
for ck in ckpts:
    name = os.path.basename(os.path.dirname(ck)) + "-" + os.path.basename(ck)[:-3]
    d = os.path.join(out, name)
    before, before_bn = err(os.path.join(d, "before.score.json")), err(os.path.join(d, "before.bn.score.json"))
    with open(os.path.join(d, "before.score.json"), encoding="utf-8") as f:
        blocks = json.load(f)["results"][0].get("blocks", "?")
    print(f"## {ck} ({blocks}): test error before the interpolation {100 * before:.2f}% "
          f"(recalibrated from {batches} batches: {100 * before_bn:.2f}%)\n")
    print("| policy | after (%) | jump (points) | after + BN recalibration (%) | jump (points) |")
    print("|---|---|---|---|---|")
    rows = []
    for p in policies:
        a, b = err(os.path.join(d, p + ".score.json")), err(os.path.join(d, p + ".bn.score.json"))
        print(f"| {p} | {100 * a:.2f} | {100 * (a - before):+.2f} | {100 * b:.2f} | {100 * (b - before):+.2f} |")
        rows.append({"policy": p, "error_after": a, "error_after_recalibrated": b})
    print()
    doc.append({"checkpoint": ck, "blocks": blocks, "error_before": before, "error_before_recalibrated": before_bn,
                "batches": int(batches), "policies": rows})
with open(os.path.join(out, "jumps.json"), "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=1)
EOF
