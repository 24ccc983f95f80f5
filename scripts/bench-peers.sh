#!/usr/bin/env bash
# Runs mlres and the peer frameworks (PyTorch channels_last, TensorFlow, ONNX Runtime) on the
# paper's networks, alternating them, and prints images/s and the mlres/peer ratios. Inference
# cases also time ONNX Runtime on mlres's own ONNX export ("ort-mlres-export").
#
#   scripts/bench-peers.sh [--rounds N] [--threads N] [--quick] [--ort-export-only]
#
# --ort-export-only: inference only, mlres against ONNX Runtime on mlres's own export of the same
#   network (no peer script, no training cases): the like-for-like ratio of docs/interop.md.
#
# Environment:
#   MLRES_PEERS_VENV    venv with the peers (default ~/peers-venv; created if missing: ~7 GB)
#   MLRES_PEERS_SCRIPT  the shared peer benchmark (default ../shared/bench/resnet_peers.py)
#   MLRES_WAIT_IDLE     seconds to wait for idle CPUs before each measurement (default 120)
#   MLRES_FRAMEWORKS_TRAIN / MLRES_FRAMEWORKS_INFER  peers per task (default torch-cl / ort: the
#                       fastest peers here; add tf, torch, ... as comma lists)
# Measure on a quiet machine: a compile running beside it distorts everything (the peer script
# waits for idle CPUs and flags disturbed cases; mlres cases are run right after it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=2; THREADS=2; QUICK=0; ORTX_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --ort-export-only) ORTX_ONLY=1; shift ;;
    *) echo "bench-peers.sh: unknown argument '$1' (use --rounds N, --threads N, --quick, --ort-export-only)" >&2; exit 2 ;;
  esac
done
VENV="${MLRES_PEERS_VENV:-$HOME/peers-venv}"
PEERS="${MLRES_PEERS_SCRIPT:-../shared/bench/resnet_peers.py}"
WAIT="${MLRES_WAIT_IDLE:-120}"
FW_TRAIN="${MLRES_FRAMEWORKS_TRAIN:-torch-cl}"
FW_INFER="${MLRES_FRAMEWORKS_INFER:-ort}"
if [ ! -f "$PEERS" ]; then
  echo "bench-peers.sh: peer benchmark not found at $PEERS (set MLRES_PEERS_SCRIPT)" >&2; exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "# creating $VENV (PyTorch, ONNX Runtime, TensorFlow; a few minutes)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --upgrade pip >/dev/null
  "$VENV/bin/pip" install torch torchvision onnxruntime onnx onnxscript h5py tensorflow-cpu >/dev/null
fi
swift build -c release --product mlres-train >/dev/null
swift build -c release --product mlres-surgery >/dev/null
MLRES=.build/release/mlres-train
OUT="$(mktemp -d /tmp/mlres-bench-peers.XXXXXX)"
echo "# results in $OUT; threads $THREADS; rounds $ROUNDS; $(date -u +%FT%TZ)"

# name blocks widths
MODELS="resnet14:2-2-2:16,32,64 resnet50:8-8-8:16,32,64 wresnet14:2-2-2:32,64,128"
# task mode batch steps
TASKS="train:train:100:20 infer100:infer:100:30 infer1:infer:1:400"
[ "$QUICK" = 1 ] && MODELS="resnet14:2-2-2:16,32,64" && TASKS="train:train:100:10 infer100:infer:100:10 infer1:infer:1:200"

for r in $(seq 1 "$ROUNDS"); do
  for m in $MODELS; do
    IFS=: read -r name blocks widths <<<"$m"
    for t in $TASKS; do
      IFS=: read -r task mode batch steps <<<"$t"
      [ "$name" = wresnet14 ] && [ "$task" != train ] && continue
      [ "$ORTX_ONLY" = 1 ] && [ "$mode" != infer ] && continue
      fw="$FW_TRAIN"; [ "$mode" = infer ] && fw="$FW_INFER"
      [ "$ORTX_ONLY" = 1 ] || "$VENV/bin/python" "$PEERS" --models "$name" --tasks "$task" --frameworks "$fw" \
        --threads "$THREADS" --wait-idle "$WAIT" --out "$OUT/peers-$name-$task-$r.json" >/dev/null 2>&1 || \
        echo "# peers $name $task round $r failed (see $OUT)" >&2
      # Like the peer script: wait (up to 2 minutes) for other processes to leave the CPUs.
      [ "$ORTX_ONLY" = 1 ] || "$VENV/bin/python" - "$PEERS" "$WAIT" <<'PY' || true
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[1])))
import resnet_peers
waited, idle = resnet_peers.wait_for_idle(float(sys.argv[2]), 0.15)
if not idle:
    print("# machine not idle after %.0f s: mlres result may be disturbed" % waited, file=sys.stderr)
PY
      "$MLRES" bench --blocks "$blocks" --widths "$widths" --batch "$batch" --mode "$mode" \
        --steps "$steps" --threads "$THREADS" --json > "$OUT/mlres-$name-$task-$r.json"
      echo "# round $r $name $task: mlres $(cat "$OUT/mlres-$name-$task-$r.json")"
      if [ "$mode" = infer ]; then
        # ONNX Runtime on mlres's own ONNX export of the network bench times (init --seed 1):
        # the same network, weights and graph semantics (docs/interop.md).
        if [ ! -f "$OUT/$name.onnx" ]; then
          "$MLRES" init --blocks "$blocks" --widths "$widths" --seed 1 -o "$OUT/$name.h5" >/dev/null
          .build/release/mlres-surgery export "$OUT/$name.h5" --format onnx -o "$OUT/$name.onnx" >/dev/null
        fi
        "$VENV/bin/python" scripts/bench_onnx.py "$OUT/$name.onnx" --batch "$batch" --steps "$steps" \
          --threads "$THREADS" > "$OUT/ortx-$name-$task-$r.json"
        echo "# round $r $name $task: ort on mlres export $(cat "$OUT/ortx-$name-$task-$r.json")"
      fi
    done
  done
done

"$VENV/bin/python" - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
best = {}   # (model, task, framework) -> (images/s, peak MB, contended)
for f in glob.glob(os.path.join(out, "mlres-*.json")):
    _, model, task, _ = os.path.basename(f)[:-5].split("-")
    d = json.load(open(f))
    k = (model, task, "mlres")
    if k not in best or d["images_per_s"] > best[k][0]:
        best[k] = (d["images_per_s"], d["peak_rss_mb"], False)
for f in glob.glob(os.path.join(out, "ortx-*.json")):
    _, model, task, _ = os.path.basename(f)[:-5].split("-")
    d = json.load(open(f))
    k = (model, task, "ort-mlres-export")
    if k not in best or d["images_per_s"] > best[k][0]:
        best[k] = (d["images_per_s"], d["peak_rss_mb"], False)
for f in glob.glob(os.path.join(out, "peers-*.json")):
    for row in json.load(open(f)).get("results", []):
        if "images_per_s" not in row:
            continue
        k = (row["model"], row["task"], row["framework"])
        if k not in best or row["images_per_s"] > best[k][0]:
            best[k] = (row["images_per_s"], row["peak_rss_mb"], row.get("contended", False))
cases = sorted({(m, t) for m, t, _ in best})
print("| task | model | mlres img/s (peak MB) | peers img/s (peak MB) | mlres / fastest peer |")
print("|---|---|---|---|---|")
for m, t in cases:
    mine = best.get((m, t, "mlres"))
    peers = {fw: v for (mm, tt, fw), v in best.items() if mm == m and tt == t and fw != "mlres"}
    ptxt = ", ".join(f"{fw} {v[0]:.0f} ({v[1]:.0f}){' CONTENDED' if v[2] else ''}" for fw, v in sorted(peers.items()))
    fastest = max((v[0] for v in peers.values()), default=None)
    ratio = f"{mine[0] / fastest:.2f}x" if mine and fastest else "n/a"
    print(f"| {t} | {m} | {mine[0]:.0f} ({mine[1]:.0f}) | {ptxt} | {ratio} |" if mine else f"| {t} | {m} | n/a | {ptxt} | n/a |")
PY
