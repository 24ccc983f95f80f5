#!/usr/bin/env bash
# A full lesion study of one checkpoint, with figures:
#   scripts/lesion-study.sh CKPT DATASET OUTDIR [extra mlres-eval flags, e.g. --data-dir DIR --threads 2]
# Writes OUTDIR/{lesion-single,lesion-shuffle,lesion-drop-k,norms}.json and the PNGs
# OUTDIR/{lesion,norms}.png. Seeds and k: SEEDS (default 5) and KS (default 1,2,4).
# mlres-eval is taken from $MLRES_EVAL, else .build/release, else .build/debug, else PATH.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CKPT DATASET OUTDIR [mlres-eval flags...]" >&2
    exit 64
fi
ckpt=$1 dataset=$2 out=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
eval_bin=${MLRES_EVAL:-}
if [ -z "$eval_bin" ]; then
    for c in "$root/.build/release/mlres-eval" "$root/.build/debug/mlres-eval"; do
        if [ -x "$c" ]; then eval_bin=$c; break; fi
    done
fi
eval_bin=${eval_bin:-mlres-eval}
command -v "$eval_bin" >/dev/null 2>&1 || { echo "error: mlres-eval not found (build it or set MLRES_EVAL)" >&2; exit 2; }
[ -f "$ckpt" ] || { echo "error: $ckpt: no such file" >&2; exit 2; }
mkdir -p "$out"
seeds=${SEEDS:-5} ks=${KS:-1,2,4}

run() {  # run NAME args...: mlres-eval ... --json > OUTDIR/NAME.json, atomically
    local name=$1; shift
    echo "lesion-study: mlres-eval $*" >&2
    "$eval_bin" "$@" --json >"$out/$name.json.tmp"
    mv "$out/$name.json.tmp" "$out/$name.json"
}
run lesion-single  lesion "$ckpt" --dataset "$dataset" --mode single "$@"
run lesion-shuffle lesion "$ckpt" --dataset "$dataset" --mode shuffle --seeds "$seeds" "$@"
run lesion-drop-k  lesion "$ckpt" --dataset "$dataset" --mode drop-k --seeds "$seeds" --k "$ks" "$@"
run norms          norms  "$ckpt" --dataset "$dataset" "$@"

python3 "$here/plot.py" lesion "$out/lesion-single.json" "$out/lesion-shuffle.json" "$out/lesion-drop-k.json" \
    -o "$out/lesion.png"
python3 "$here/plot.py" norms "$out/norms.json" -o "$out/norms.png"
echo "lesion-study: done, see $out" >&2
