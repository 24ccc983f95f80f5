#!/usr/bin/env bash
# Cost of format 1.1's per-tensor SHA-256 digests on load of WResNet-122 (7.7 M parameters),
# against CRC32C over the same bytes (release build; numbers go to docs/checkpoint-format.md).
#   bash scripts/bench-digest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --build-tests >/dev/null
MLRES_BENCH=1 swift test -c release --skip-build --disable-xctest --filter DigestBenchmark 2>&1 | grep -E "digest-bench|passed|failed"
