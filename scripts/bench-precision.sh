#!/usr/bin/env bash
# The targets of issue 18, as ratios from one window with the programs alternating:
#   mlres bf16 vs mlres fp32 (training, batch 100), and mlres fp32 / bf16 inference vs ONNX Runtime
#   fp32 (batch 100 and 1) on the same networks.
# ONNX Runtime runs scripts/ort-resnet.py (the same pre-activation networks built with onnx.helper;
# only onnxruntime + onnx are needed). bf16 cases are skipped, with the reason printed, on a CPU
# whose oneDNN dispatch lacks avx512_core_bf16 (mlres refuses bf16 there: exit 2).
#
#   scripts/bench-precision.sh [--rounds N] [--threads N] [--quick]
# Environment: MLRES_PEERS_VENV (default /work/peers-venv, else ~/peers-venv) with onnxruntime, onnx.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=2; THREADS=2; QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "bench-precision.sh: unknown argument '$1' (use --rounds N, --threads N, --quick)" >&2; exit 64 ;;
  esac
done
VENV="${MLRES_PEERS_VENV:-/work/peers-venv}"; [ -x "$VENV/bin/python" ] || VENV="$HOME/peers-venv"
if ! "$VENV/bin/python" -c "import onnxruntime, onnx" 2>/dev/null; then
  echo "bench-precision.sh: no venv with onnxruntime and onnx at $VENV (python3 -m venv $VENV && $VENV/bin/pip install onnxruntime onnx)" >&2
  exit 2
fi
swift build -c release --product mlres-train >/dev/null
MLRES=.build/release/mlres-train
OUT="$(mktemp -d /tmp/mlres-bench-precision.XXXXXX)"
echo "# results in $OUT; threads $THREADS; rounds $ROUNDS; $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
PRECISIONS="fp32 bf16"
if ! "$MLRES" bench --precision bf16 --blocks 1-1-1 --batch 2 --steps 1 --warmup 0 --threads 1 >/dev/null 2>"$OUT/bf16-check.err"; then
  echo "# bf16 cases skipped: $(cat "$OUT/bf16-check.err")"
  PRECISIONS="fp32"
fi
# name blocks widths
MODELS="resnet14:2-2-2:16,32,64 resnet50:8-8-8:16,32,64 wresnet14:2-2-2:32,64,128"
# task mode batch steps
TASKS="train:train:100:10 infer100:infer:100:20 infer1:infer:1:300"
[ "$QUICK" = 1 ] && MODELS="resnet14:2-2-2:16,32,64" && TASKS="train:train:100:5 infer100:infer:100:10 infer1:infer:1:100"
for r in $(seq 1 "$ROUNDS"); do
  for m in $MODELS; do
    IFS=: read -r name blocks widths <<<"$m"
    for t in $TASKS; do
      IFS=: read -r task mode batch steps <<<"$t"
      [ "$name" = wresnet14 ] && [ "$task" != train ] && continue
      for p in $PRECISIONS; do
        "$MLRES" bench --precision "$p" --blocks "$blocks" --widths "$widths" --batch "$batch" --mode "$mode" \
          --steps "$steps" --threads "$THREADS" --json > "$OUT/mlres_$p-$name-$task-$r.json"
        echo "# round $r $name $task mlres $p: $(cat "$OUT/mlres_$p-$name-$task-$r.json") load $(cut -d' ' -f1 /proc/loadavg)"
      done
      if [ "$mode" = infer ]; then
        "$VENV/bin/python" scripts/ort-resnet.py --blocks "$blocks" --widths "$widths" --batch "$batch" \
          --steps "$steps" --threads "$THREADS" > "$OUT/ort_fp32-$name-$task-$r.json"
        echo "# round $r $name $task ort fp32: $(cat "$OUT/ort_fp32-$name-$task-$r.json") load $(cut -d' ' -f1 /proc/loadavg)"
      fi
    done
  done
done
"$VENV/bin/python" - "$OUT" <<'PY'
import glob, json, os, sys
best = {}
for f in glob.glob(os.path.join(sys.argv[1], "*_*-*-*-*.json")):
    who, model, task, _ = os.path.basename(f)[:-5].split("-")
    d = json.load(open(f)); k = (model, task, who)
    best[k] = max(best.get(k, 0), d["images_per_s"])
print("| task | model | mlres fp32 | mlres bf16 | ORT fp32 | fp32/ORT | bf16/ORT | bf16/fp32 |")
print("|---|---|---|---|---|---|---|---|")
for m, t in sorted({(m, t) for m, t, _ in best}):
    f, b, o = (best.get((m, t, w)) for w in ("mlres_fp32", "mlres_bf16", "ort_fp32"))
    r = lambda x, y: f"{x / y:.2f}x" if x and y else "n/a"
    s = lambda x: f"{x:.0f}" if x else "n/a"
    print(f"| {t} | {m} | {s(f)} | {s(b)} | {s(o)} | {r(f, o)} | {r(b, o)} | {r(b, f)} |")
PY
