#!/usr/bin/env bash
# Builds everything (library, executables, tests) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build --disable-xctest
