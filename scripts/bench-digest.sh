#!/usr/bin/env bash
# Cost of format 1.1's per-tensor SHA-256 digests on load of WResNet-122 (issue 13; numbers go to
# docs/checkpoint-format.md). Not a test: a measurement, run on a quiet machine.
#
# Two checkpoints of WResNet-122 (blocks 20-20-20, widths 32,64,128, 7,669,418 parameters): a fresh
# `mlres-train init` (model only) and the last.h5 of a 5-step run (model + momentum buffers). For
# each, an h5py copy with every digest attribute and format_minor_version removed (a 1.0 file:
# readers load it without digest checks, `inspect` calls it unprotected); both the original and the
# stripped copy are rewritten by h5repack (hdf5-tools) so that their layouts are the same. `mlres-surgery inspect`
# (a full load: every tensor read, every digest present checked, plus the whole-file SHA-256 it
# reports) runs on the protected and the stripped file alternately, ROUNDS times; the difference of
# the medians is what the digests cost on load, reported as a share of the protected load.
# Then the algorithm choice: SHA-256 (hashlib, OpenSSL) against CRC-32 (zlib) over the same tensor
# bytes in one Python process, as a ratio of two C implementations.
#
#   bash scripts/bench-digest.sh [ROUNDS=9]        # MLRES_BIN=DIR: use built binaries from DIR
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-9}
BIN=${MLRES_BIN:-}
if [ -z "$BIN" ]; then
    swift build -c release --product mlres-train >/dev/null
    swift build -c release --product mlres-surgery >/dev/null
    BIN=$(swift build -c release --show-bin-path)
fi
W=$(mktemp -d /tmp/mlres-bench-digest.XXXX); trap 'rm -rf "$W"' EXIT
"$BIN/mlres-train" init --blocks 20-20-20 --widths 32,64,128 --seed 1 -o "$W/model.h5" >/dev/null
"$BIN/mlres-train" --dataset cifar10 --data-dir fixtures/datasets/cifar10 --blocks 20-20-20 --widths 32,64,128 \
    --epochs 1 --batch 8 --threads 2 --out "$W/run" >/dev/null
cp "$W/run/last.h5" "$W/momentum.h5"
python3 - "$BIN" "$W" "$ROUNDS" <<'PY'
import hashlib, os, resource, shutil, statistics, subprocess, sys, time, zlib
import h5py, numpy as np
BIN, W, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3])

def strip(src, dst):
    shutil.copy(src, dst + ".tmp")
    with h5py.File(dst + ".tmp", "r+") as f:
        objs = [f]
        f.visititems(lambda name, o: objs.append(o))
        for o in objs:
            for a in ("sha256", "strings_sha256"):
                if a in o.attrs: del o.attrs[a]
        if "format_minor_version" in f.attrs: del f.attrs["format_minor_version"]
    # Both files go through h5repack, so that they differ only in the digest attributes (an
    # attribute deleted in place leaves the layout of the file changed).
    subprocess.run(["h5repack", dst + ".tmp", dst], check=True); os.remove(dst + ".tmp")

def inspect(path):
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    p = subprocess.run([f"{BIN}/mlres-surgery", "inspect", path], capture_output=True, text=True)
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0: sys.exit(f"inspect {path} failed: {p.stderr}")
    return t1 - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), p.stdout

for name in ("model", "momentum"):
    prot, bare = f"{W}/{name}-repacked.h5", f"{W}/{name}-stripped.h5"
    subprocess.run(["h5repack", f"{W}/{name}.h5", prot], check=True)
    strip(f"{W}/{name}.h5", bare)
    out = inspect(bare)[2]
    assert "unprotected" in out, "the stripped copy should load as an unprotected 1.0 file:\n" + out
    walls, cpus = {prot: [], bare: []}, {prot: [], bare: []}
    for _ in range(ROUNDS):
        for p in (prot, bare):
            w, c, _ = inspect(p); walls[p].append(w); cpus[p].append(c)
    mw = {p: statistics.median(v) for p, v in walls.items()}
    mc = {p: statistics.median(v) for p, v in cpus.items()}
    with h5py.File(prot, "r") as f:
        arrays = []
        f.visititems(lambda n, o: arrays.append(np.ascontiguousarray(o[()])) if isinstance(o, h5py.Dataset) and o.dtype == np.float32 else None)
    nbytes = sum(a.nbytes for a in arrays)
    sha, crc = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        for a in arrays: hashlib.sha256(a.data).digest()
        t1 = time.perf_counter()
        for a in arrays: zlib.crc32(a.data)
        t2 = time.perf_counter()
        sha.append(t1 - t0); crc.append(t2 - t1)
    print(f"digest-bench {name}: file {os.path.getsize(prot)} bytes, {len(arrays)} float32 tensors ({nbytes} bytes); "
          f"inspect median of {ROUNDS}: protected {mw[prot]*1000:.1f} ms wall / {mc[prot]*1000:.1f} ms CPU, "
          f"stripped {mw[bare]*1000:.1f} ms wall / {mc[bare]*1000:.1f} ms CPU; "
          f"digests cost {(mw[prot]-mw[bare])*1000:.1f} ms = {100*(mw[prot]-mw[bare])/mw[prot]:.1f}% of the load (wall), "
          f"{100*(mc[prot]-mc[bare])/mc[prot]:.1f}% (CPU); "
          f"hashlib SHA-256 {statistics.median(sha)*1000:.1f} ms vs zlib CRC-32 {statistics.median(crc)*1000:.1f} ms over the same bytes")
PY
