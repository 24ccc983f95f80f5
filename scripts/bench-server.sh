#!/usr/bin/env bash
# Load benchmark of `mlres-eval serve` (not a test): starts the server on loopback, drives it
# with wrk at concurrency 1, 8 and 32 with single-image infer requests, each level once with a
# JSON body (UINT8 numbers, JSON reply) and once with Triton's binary tensor data (raw UINT8
# bytes after the JSON header, binary reply), alternating, and reports throughput, p50/p99
# latency, the average batch the server formed, the CPU seconds of the server and of wrk, and the
# ratio of served throughput at concurrency 32 to offline batched inference of the same architecture (`mlres-train bench
# --mode infer --blocks/--widths/--input-shape/--classes` from the model's metadata, batch =
# --max-batch, same --threads and OMP_WAIT_POLICY). Then a 10x
# overload phase (320 connections, --max-queue = --max-batch) checks that excess requests get 429
# (not timeouts) and that the server's memory stays bounded.
#
# Usage: scripts/bench-server.sh [--model FILE.h5] [--blocks 2-2-2] [--widths 16,32,64]
#          [--duration SECONDS] [--threads N] [--max-batch N] [--max-queue-delay-ms MS]
#          [--concurrency "1 8 32"] [--debug] [--no-build] [--no-overload]
# Environment: OFFLINE_IPS=images/s skips running mlres-train bench and uses that number;
# MLRES_BIN=DIR takes the binaries from DIR (with --no-build: no swift command runs at all).
# Everything runs on 127.0.0.1; the script stops the server and removes its files on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL="" BLOCKS=2-2-2 WIDTHS=16,32,64 DURATION=10 THREADS=$(nproc) MAX_BATCH=64 DELAY_MS=2
CONCURRENCY="1 8 32" CONFIG=release BUILD=1 OVERLOAD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --blocks) BLOCKS=$2; shift 2 ;;
    --widths) WIDTHS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --max-batch) MAX_BATCH=$2; shift 2 ;;
    --max-queue-delay-ms) DELAY_MS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --debug) CONFIG=debug; shift ;;
    --no-build) BUILD=0; shift ;;
    --no-overload) OVERLOAD=0; shift ;;
    -h|--help) . "$(dirname "$0")/lib.sh"; script_help "$0"; exit 0 ;;
    *) echo "bench-server: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "bench-server: $*" >&2; exit 1; }

if ! command -v wrk >/dev/null 2>&1; then
  echo "bench-server: installing wrk (Debian package)" >&2
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1; } \
    || die "wrk is missing and could not be installed (apt-get install wrk)"
fi
command -v python3 >/dev/null || die "python3 is needed to write the request body"

# The load generator and the server share the machine's cores: OpenMP workers that spin while
# waiting (the default "active" policy) starve the HTTP threads and wrk. Passive waiting measured
# 2-3x more served throughput on 2 cores; set OMP_WAIT_POLICY=active to compare.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

cd "$ROOT"
if [ "$BUILD" = 1 ]; then
  echo "bench-server: building ($CONFIG)..." >&2
  swift build -c "$CONFIG" --product mlres-eval >&2
  swift build -c "$CONFIG" --product mlres-train >&2
fi
BIN=${MLRES_BIN:-$(swift build -c "$CONFIG" --show-bin-path)}   # MLRES_BIN: a folder of built binaries
[ -x "$BIN/mlres-eval" ] || die "$BIN/mlres-eval not built"

WORK=$(mktemp -d /tmp/mlres-bench-server.XXXXXX)
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap 'stop_server; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/models"

if [ -n "$MODEL" ]; then
  [ -f "$MODEL" ] || die "--model $MODEL: no such file"
  cp "$MODEL" "$WORK/models/bench.h5"
else
  "$BIN/mlres-train" init --blocks "$BLOCKS" --widths "$WIDTHS" --seed 1 -o "$WORK/models/bench.h5" >&2 \
    || die "could not create a model with mlres-train init (pass --model FILE.h5)"
fi

PORT=""
start_server() {  # extra serve flags as arguments
  : > "$WORK/server.log"
  "$BIN/mlres-eval" serve --models "$WORK/models" --port 0 --threads "$THREADS" --max-batch "$MAX_BATCH" \
    --max-queue-delay-ms "$DELAY_MS" "$@" > "$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/server.log" | head -1)
    [ -n "$PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "server exited"; }
    sleep 0.2
  done
  die "server did not start listening"
}

metric() {  # sum of a metric's samples whose line matches a filter
  curl -s "http://127.0.0.1:$PORT/metrics" | awk -v n="$1" -v f="${2:-}" \
    'index($0, n) == 1 && index($0, f) > 0 { s += $NF } END { printf "%d\n", s }'
}
rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$SERVER_PID/status"; }

to_ms() {  # wrk latency "1.23ms" / "456.00us" / "1.02s" -> milliseconds
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0;
                         else if (v ~ /s$/) printf "%.3f", v * 1000; else print "?" }'
}

start_server
META=$(curl -s "http://127.0.0.1:$PORT/v2/models/bench") || die "no metadata"
HEADER_LEN=$(python3 - "$META" "$WORK/body.json" "$WORK/body.bin" <<'PY'
import json, random, sys
meta = json.loads(sys.argv[1])
c, h, w = meta["input_shape"]
random.seed(7)
data = [random.randrange(256) for _ in range(c * h * w)]
body = {"inputs": [{"name": "input", "shape": [1, c, h, w], "datatype": "UINT8", "data": data}]}
open(sys.argv[2], "w").write(json.dumps(body))
# The same image as Triton's binary tensor data, all outputs asked in binary (what tritonclient sends).
head = json.dumps({"inputs": [{"name": "input", "shape": [1, c, h, w], "datatype": "UINT8",
                               "parameters": {"binary_data_size": len(data)}}],
                   "parameters": {"binary_data_output": True}}).encode()
open(sys.argv[3], "wb").write(head + bytes(data))
print(len(head))
PY
)
cat > "$WORK/post-json.lua" <<LUA
local f = io.open("$WORK/body.json", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA
cat > "$WORK/post-binary.lua" <<LUA
local f = io.open("$WORK/body.bin", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = "$HEADER_LEN"
LUA
cp "$WORK/post-json.lua" "$WORK/post.lua"
URL="http://127.0.0.1:$PORT/v2/models/bench/infer"
DESC=$(echo "$META" | python3 -c 'import json,sys; m=json.load(sys.stdin); print("input %s, blocks %s, widths %s, backend %s" % ("x".join(map(str, m["input_shape"])), "-".join(map(str, m["blocks"])), ",".join(map(str, m["widths"])), m["backend"]))')
echo "model ${MODEL:-from mlres-train init}: $DESC; threads $THREADS, max-batch $MAX_BATCH, max-queue-delay ${DELAY_MS}ms, $CONFIG build, OMP_WAIT_POLICY=$OMP_WAIT_POLICY"
echo "bodies: JSON $(wc -c < "$WORK/body.json") bytes, binary $(wc -c < "$WORK/body.bin") bytes (one UINT8 image); wrk ${DURATION}s per level; client and server share $(nproc) cores"

wrk -t 1 -c 1 -d 2s -s "$WORK/post-json.lua" "$URL" > /dev/null     # warm-up (plans, caches)
wrk -t 1 -c 1 -d 1s -s "$WORK/post-binary.lua" "$URL" > /dev/null
curl -s -o /dev/null -w '%{http_code}' --data-binary @"$WORK/body.bin" -H "Inference-Header-Content-Length: $HEADER_LEN" "$URL" \
  | grep -q 200 || die "the binary request was not answered 200"

cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$SERVER_PID/stat"; }   # utime+stime, USER_HZ 100

printf '\n| body | concurrency | req/s | p50 ms | p99 ms | non-2xx | avg batch | server CPU s | wrk CPU s |\n|---|---|---|---|---|---|---|---|---|\n'
SERVED32_json="" SERVED32_binary=""
for c in $CONCURRENCY; do
  for mode in json binary; do
    i0=$(metric mlres_inferences_total); e0=$(metric mlres_executions_total); s0=$(cpu_s)
    t=$(( c < 2 ? c : 2 ))
    out="$WORK/wrk-$mode-$c.txt"
    if [ -x /usr/bin/time ]; then
      /usr/bin/time -f '%U %S' -o "$WORK/time.txt" wrk -t "$t" -c "$c" -d "${DURATION}s" --latency -s "$WORK/post-$mode.lua" "$URL" > "$out"
      wcpu=$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time.txt")
    else
      wrk -t "$t" -c "$c" -d "${DURATION}s" --latency -s "$WORK/post-$mode.lua" "$URL" > "$out"; wcpu="-"
    fi
    i1=$(metric mlres_inferences_total); e1=$(metric mlres_executions_total); s1=$(cpu_s)
    rps=$(awk '/^Requests\/sec/ { print $2 }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$out"); non2xx=${non2xx:-0}
    avg=$(awk -v a=$((i1 - i0)) -v b=$((e1 - e0)) 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }')
    scpu=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.1f", b - a }')
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$mode" "$c" "$rps" "$p50" "$p99" "$non2xx" "$avg" "$scpu" "$wcpu"
    [ "$c" = 32 ] && eval "SERVED32_$mode=$rps"
  done
done
SERVED32=$SERVED32_binary

# Offline batched inference of the same architecture: `mlres-train bench --mode infer` times the
# engine's eval-mode forward on batches of --max-batch (it builds the network from the
# architecture flags; inference time does not depend on the weights' values). The server is
# stopped first so the two do not share the cores.
stop_server
OFFLINE=${OFFLINE_IPS:-}
if [ -z "$OFFLINE" ] && [ -x "$BIN/mlres-train" ]; then
  read -r A_BLOCKS A_WIDTHS A_SHAPE A_CLASSES < <(echo "$META" | python3 -c 'import json,sys; m=json.load(sys.stdin); print("-".join(map(str, m["blocks"])), ",".join(map(str, m["widths"])), ",".join(map(str, m["input_shape"])), m["classes"])')
  if "$BIN/mlres-train" bench --mode infer --blocks "$A_BLOCKS" --widths "$A_WIDTHS" --input-shape "$A_SHAPE" \
       --classes "$A_CLASSES" --batch "$MAX_BATCH" --threads "$THREADS" --json > "$WORK/offline.json" 2> "$WORK/offline.err"; then
    OFFLINE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["images_per_s"])' "$WORK/offline.json" || true)
  else
    cat "$WORK/offline.err" >&2
  fi
fi
if [ -n "$OFFLINE" ] && [ -n "$SERVED32" ]; then
  echo
  awk -v j="$SERVED32_json" -v s="$SERVED32_binary" -v o="$OFFLINE" -v b="$MAX_BATCH" 'BEGIN {
    printf "offline batched inference (mlres-train bench --mode infer, batch %d): %.1f images/s\n", b, o
    printf "served at concurrency 32: JSON %.1f images/s (ratio %.2f), binary %.1f images/s (ratio %.2f; target >= 0.7)\n", j, j / o, s, s / o }'
else
  echo
  echo "offline batched inference: n/a (mlres-train bench --mode infer failed, see above; set OFFLINE_IPS to compare)"
fi

if [ "$OVERLOAD" = 1 ]; then
  stop_server
  start_server --max-queue "$MAX_BATCH"
  URL="http://127.0.0.1:$PORT/v2/models/bench/infer"
  wrk -t 1 -c 1 -d 1s -s "$WORK/post.lua" "$URL" > /dev/null
  rss0=$(rss_kb); peak=$rss0
  wrk -t 2 -c 320 -d "${DURATION}s" --timeout 10s --latency -s "$WORK/post.lua" "$URL" > "$WORK/wrk-over.txt" &
  WRK=$!
  while kill -0 $WRK 2>/dev/null; do r=$(rss_kb); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.5; done
  wait $WRK || true
  ok=$(metric mlres_http_requests_total 'infer",status="200"'); busy=$(metric mlres_http_requests_total 'infer",status="429"')
  timeouts=$(awk '/Socket errors/ { gsub(",", ""); print $NF }' "$WORK/wrk-over.txt"); timeouts=${timeouts:-0}
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$WORK/wrk-over.txt")")
  echo
  echo "overload: 320 connections (10x the top level) for ${DURATION}s, --max-queue $MAX_BATCH:"
  echo "  200: $ok, 429: $busy, client timeouts: $timeouts, p99 $p99 ms; server RSS ${rss0} kB before, ${peak} kB peak, $(rss_kb) kB after"
fi
stop_server
