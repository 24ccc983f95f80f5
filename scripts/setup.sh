#!/usr/bin/env bash
# Installs what mlres needs on a fresh Debian machine of this kind (idempotent, quiet when done).
#   C libraries: HDF5 (checkpoints), oneDNN (compute), zlib (gzipped IDX files),
#   Open MPI (data-parallel training: libopenmpi-dev to build, openmpi-bin for mpirun)
#   Data: Debian's dataset-fashion-mnist (the real dataset every machine here can install)
#   Python: numpy + h5py for the interop tests and fixture scripts; matplotlib for plots;
#           tritonclient[http] for the server's client tests;
#           onnx + onnxruntime + safetensors for the ONNX/safetensors interop tests (no PyTorch)
set -euo pipefail
need=()
for p in libhdf5-dev hdf5-tools zlib1g-dev libdnnl-dev dataset-fashion-mnist pkg-config \
         libopenmpi-dev openmpi-bin; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! python3 -c "import numpy, h5py, matplotlib, onnx, onnxruntime, safetensors" >/dev/null 2>&1; then
    echo "setup: installing python packages (numpy, h5py, matplotlib, onnx, onnxruntime, safetensors)" >&2
    python3 -m pip install -q --disable-pip-version-check numpy h5py matplotlib onnx onnxruntime safetensors >/dev/null 2>&1 \
        || echo "setup: warning: pip could not install the python packages (interop tests will say so)" >&2
fi
# Triton's HTTP client: the server tests drive mlres-eval serve with it (Tests/python/).
if ! python3 -c "import tritonclient.http" >/dev/null 2>&1; then
    echo "setup: installing python package tritonclient[http]" >&2
    python3 -m pip install -q --disable-pip-version-check "tritonclient[http]" >/dev/null 2>&1 \
        || echo "setup: warning: pip could not install tritonclient[http] (the tritonclient tests will fail)" >&2
fi
