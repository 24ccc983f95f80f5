#!/bin/sh
# Data-loader throughput alone (no training), release build, one consumer thread.
# Prints images/s for Fashion-MNIST (if Debian's dataset-fashion-mnist is installed),
# CIFAR-shaped and STL-shaped synthetic data, with and without the prefetch thread.
set -eu
cd "$(dirname "$0")/.."
MLRES_BENCH=1 swift test -c release -Xswiftc -enable-testing --disable-xctest \
    --filter loaderThroughput 2>&1 | grep -E "loader |read |eval |✘|passed|failed|error"
