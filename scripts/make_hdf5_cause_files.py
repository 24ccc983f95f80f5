#!/usr/bin/env python3
"""Makes, from one good mlres checkpoint, the HDF5 files whose failures the layer below would
report vaguely (issue 12 kind 3, field case fc-02), each for a different cause:

  open-mark.h5       a good file left marked open-for-write: h5py opens it for writing (r+) and
                     the process is killed with -9 (superblock v3 status flags stay set)
  truncated.h5       the first half of the file
  superblock-v4.h5   superblock version byte set to 4 (no HDF5 1.10 reads it)
  family0.h5 ...     the checkpoint written with HDF5's family driver (4 KiB members)
  split-m.h5/-r.h5   the checkpoint written with the split driver (metadata / raw data)
  small-offsets.h5   the checkpoint written with 4-byte addresses and lengths (H5Pset_sizes)
  newer-format.h5    a good file plus a /model attribute written by h5py's newer HDF5 (>= 1.12)
                     with libver="latest": a datatype message version HDF5 1.10 cannot decode
  lzf.h5             the stem weight compressed with h5py's LZF filter

    python3 scripts/make_hdf5_cause_files.py GOOD.h5 OUTDIR

Needs numpy and h5py (scripts/setup.sh installs them). Used by CLITests/UnreadableCauseTests.
"""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np


def copy_into(src, dst):
    for k in src.attrs:
        dst.attrs[k] = src.attrs[k]
    for k in src:
        src.copy(src[k], dst, name=k)


def main(good, out):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)
    data = open(good, "rb").read()

    shutil.copy(good, p("open-mark.h5"))
    subprocess.run([sys.executable, "-c",
                    "import h5py, os, sys; f = h5py.File(sys.argv[1], 'r+'); f.flush(); os.kill(os.getpid(), 9)",
                    p("open-mark.h5")], check=False)
    if open(p("open-mark.h5"), "rb").read(12)[11] & 0x05 == 0:
        sys.exit("open-mark.h5: h5py left no open-for-write mark (superblock v3 expected)")

    open(p("truncated.h5"), "wb").write(data[: len(data) // 2])
    v4 = bytearray(data)
    v4[8] = 4
    open(p("superblock-v4.h5"), "wb").write(bytes(v4))

    with h5py.File(good, "r") as src:
        with h5py.File(p("family%d.h5"), "w", driver="family", memb_size=4096) as d:
            copy_into(src, d)
        with h5py.File(p("split"), "w", driver="split") as d:
            copy_into(src, d)
        fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
        fcpl.set_sizes(4, 4)
        fid = h5py.h5f.create(p("small-offsets.h5").encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl)
        with h5py.File(fid) as d:
            copy_into(src, d)

    if h5py.version.hdf5_version_tuple < (1, 12):
        sys.exit(f"newer-format.h5 needs h5py built on HDF5 >= 1.12 (this one: {h5py.version.hdf5_version})")
    shutil.copy(good, p("newer-format.h5"))
    with h5py.File(p("newer-format.h5"), "r+", libver="latest") as f:
        f["model"].attrs["note"] = np.complex64(1 + 2j)

    shutil.copy(good, p("lzf.h5"))
    with h5py.File(p("lzf.h5"), "r+") as f:
        name = "model/stem/conv/weight"
        w, attrs = f[name][...], dict(f[name].attrs)
        del f[name]
        d = f.create_dataset(name, data=w, compression="lzf")
        for k, v in attrs.items():
            d.attrs[k] = v


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
