#!/usr/bin/env bash
# Data-parallel benchmark (docs/distributed.md): images/s of one process x 2 threads against
# mpirun -np 2 x 1 thread, on ResNet-14 (2-2-2) and ResNet-50 (8-8-8), global batch 100, on a
# Fashion-MNIST slice; the two set-ups alternate, REPEAT times each. From the 2-rank runs'
# metrics.jsonl: time per gradient allreduce (MPI_Allreduce of the flat gradient plus the loss
# sums, as the trainer measures it: it includes waiting for the slower rank) and bytes per
# step. Then the scaling model of docs/distributed.md, from these measured numbers.
#
#   bash scripts/bench-distributed.sh            # needs a release build: swift build -c release
#   BIN=.build/debug IMAGES=1000 REPEAT=1 bash scripts/bench-distributed.sh   # quicker, less exact
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/.build/release}
IMAGES=${IMAGES:-3000}      # training images per run (one epoch, batch 100)
REPEAT=${REPEAT:-2}
NETS=${NETS:-"2-2-2 8-8-8"}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # containers / CI run as root
# The same activation layout for both set-ups; NHWC runs on every CPU (the engine refuses the
# blocked layout where oneDNN has no optimised kernel for it, e.g. AVX2-only machines).
export MLRES_ENGINE_LAYOUT=${MLRES_ENGINE_LAYOUT:-nhwc}
MPIRUN=(mpirun -np 2 --bind-to none --oversubscribe)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--dataset fashion-mnist --train-subset "$IMAGES" --test-subset 100 --batch-size 100 --epochs 1
        --log-format json --force)

# The epoch record of a run's metrics.jsonl as "images/s seconds/allreduce bytes/step".
record() {
    python3 - "$1" "$IMAGES" <<'EOF'
import json, sys
rec = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if '"epoch"' in l][-1]
n = int(sys.argv[2]) // 100 * 100
calls = rec.get("allreduce_calls", 0)
print(n / rec["wall_seconds"], rec["allreduce_seconds"] / calls if calls else 0,
      rec["allreduce_bytes"] / calls if calls else 0, rec["wall_seconds"] / (n / 100))
EOF
}

echo "# $(date -u +%FT%TZ) $(nproc) cores; $("${MPIRUN[0]}" --version | head -1); binaries $BIN; $IMAGES images, batch 100"
printf '%-7s %-16s %10s %12s %14s %12s\n' blocks setup images/s s/step ms/allreduce bytes/step
results=()
for net in $NETS; do
    for r in $(seq "$REPEAT"); do
        "$BIN/mlres-train" "${common[@]}" --blocks "$net" --threads 2 --out "$out/one" >/dev/null
        read -r ips _ _ sps < <(record "$out/one")
        printf '%-7s %-16s %10.1f %12.3f %14s %12s\n' "$net" "1 proc x 2 thr" "$ips" "$sps" - -
        results+=("$net one $ips $sps 0 0")
        "${MPIRUN[@]}" "$BIN/mlres-train" "${common[@]}" --blocks "$net" --threads 1 --out "$out/two" >/dev/null 2>"$out/err" \
            || { cat "$out/err" >&2; exit 1; }
        read -r ips ar bytes sps < <(record "$out/two")
        printf '%-7s %-16s %10.1f %12.3f %14.2f %12.0f\n' "$net" "2 ranks x 1 thr" "$ips" "$sps" "$(python3 -c "print($ar*1000)")" "$bytes"
        results+=("$net two $ips $sps $ar $bytes")
    done
done

# Scaling model (docs/distributed.md): N machines, each as fast as this one with both cores
# (1 process x 2 threads), global batch 100 split N ways; compute scales as 1/N; the gradient
# allreduce is a ring: 2(N-1)/N * bytes / bandwidth + 2(N-1) * latency, not overlapped with
# the backward pass (the trainer reduces after it).
printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics as st
rows = [l.split() for l in sys.stdin if l.strip()]
nets = sorted({r[0] for r in rows}, key=lambda n: sum(map(int, n.split("-"))))
print("\n# predicted images/s (speed-up over one machine) for global batch 100")
links = [("10 Gb/s", 10e9 / 8, 50e-6), ("100 Gb/s", 100e9 / 8, 5e-6)]
for net in nets:
    step1 = st.median(float(r[3]) for r in rows if r[0] == net and r[1] == "one")
    size = st.median(float(r[5]) for r in rows if r[0] == net and r[1] == "two")
    print(f"{net}: one machine {step1*1000:.1f} ms/step ({100/step1:.0f} img/s), gradient {size/1e6:.2f} MB")
    print("  N   " + "  ".join(f"{name:>22}" for name, _, _ in links))
    for n in [2, 4, 8, 16, 32, 64]:
        cells = []
        for name, bw, lat in links:
            t = step1 / n + 2 * (n - 1) / n * size / bw + 2 * (n - 1) * lat
            cells.append(f"{100/t:9.0f} img/s ({step1/t:4.1f}x)")
        print(f"  {n:<3} " + "  ".join(f"{c:>22}" for c in cells))
'
