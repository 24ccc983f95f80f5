#!/usr/bin/env bash
# Builds everything (library, executables, tests) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
# Two passes over the same test bundle. The in-process server tests run their server on the
# test process's own cooperative thread pool (2 threads on this machine kind); beside the MPI,
# training and tool-launching tests they were starved into timeouts, so they run after the rest,
# one at a time (about a minute).
swift test --skip-build --disable-xctest --skip MLResServerTests
swift test --skip-build --disable-xctest --filter MLResServerTests --no-parallel
