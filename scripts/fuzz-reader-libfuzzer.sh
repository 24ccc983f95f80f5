#!/usr/bin/env bash
# Coverage-guided fuzzing of the checkpoint reader (MLResHDF5: CheckpointIO.read and .verify)
# with libFuzzer, for N seconds (default 30).
#
#   bash scripts/fuzz-reader-libfuzzer.sh [SECONDS] [extra libFuzzer flags...]
#
# Builds Fuzz/ReaderFuzzer (a package of its own, not part of `swift build` or scripts/test.sh)
# with -sanitize=fuzzer,address, seeds the corpus with the committed HDF5 fixtures and (when
# mlres-train is built) a minimal fresh checkpoint, and runs. The corpus grows across runs in
# .build/fuzz-reader/corpus. Exit 0: no finding. Non-zero: libFuzzer found a crash, an ASan
# report, a timeout (>10 s on one input) or an out-of-memory (>2 GB); the input that did it is
# written to .build/fuzz-reader/findings/ (replay: the printed ReaderFuzzer command with that file).
# Leak detection is off by default: libhdf5 1.10 itself leaks a few allocations when an open of a
# corrupt file fails (LeakSanitizer points inside libhdf5_serial). LEAKS=1 turns it on.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
pkg=Fuzz/ReaderFuzzer
work=.build/fuzz-reader
flags=(--package-path "$pkg" --scratch-path "$work" -c release
       -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library)
swift build "${flags[@]}" >&2
fuzzer="$(swift build "${flags[@]}" --show-bin-path)/ReaderFuzzer"

mkdir -p "$work/corpus" "$work/findings"
find fixtures -name '*.h5' -exec cp -n {} "$work/corpus/" \;
if [ -x .build/debug/mlres-train ] && [ ! -e "$work/corpus/minimal.h5" ]; then
    .build/debug/mlres-train init --blocks 1 --widths 2 --classes 2 --input-shape 1,4,4 --seed 0 \
        -o "$work/corpus/minimal.h5" >/dev/null
fi
echo "fuzzing the checkpoint reader for ${seconds}s ($(ls "$work/corpus" | wc -l) corpus files)" >&2
ASAN_OPTIONS="detect_leaks=${LEAKS:-0}${ASAN_OPTIONS:+:$ASAN_OPTIONS}" exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
    -detect_leaks="${LEAKS:-0}" \
    -artifact_prefix="$work/findings/" -print_final_stats=1 "$@" "$work/corpus"
