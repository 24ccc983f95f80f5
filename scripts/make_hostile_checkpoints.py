#!/usr/bin/env python3
"""Makes hostile mutants of valid mlres checkpoints (issue 13's test family).

    python3 scripts/make_hostile_checkpoints.py SOURCE.h5 OUTDIR [--per-class N] [--seed S]
        [--classes a,b,...] [--members N]

SOURCE.h5 must be a checkpoint written by mlres (format 1.1, so every content byte is bound to
a digest). OUTDIR receives CLASS-NNNNN.h5 files and manifest.jsonl, one line per mutant:
{"file", "class", "expect", "what"} where expect is
  "refuse"       the reader must refuse it (exit 2, message naming an HDF5 path),
  "same"         the file is valid and must read back exactly as SOURCE,
  "refuse-or-same"  either, but never a different checkpoint ("accepted but wrong").
Classes (the field cases rel-01..09 and their kin, plus random byte-level mutations):
  vds        a tensor replaced by a virtual dataset (onto itself or onto another tensor)   rel-01
  external   a tensor whose bytes live in another file (external storage)                  rel-02
  masked     a tensor chunk stored with Fletcher32 skipped (filter mask 1)                  rel-04a
  unwritten  a tensor dataset whose chunk was never written (fill values)                   rel-04b
  meaning    a number without meaning: input_std 0/NaN/Inf, input_mean NaN, bn_epsilon <= 0,
             bn_momentum outside [0,1], optimizer hyper-parameter NaN/Inf, h NaN/<0, a NaN or
             Inf weight                                                                      rel-05, fc-08
  chunkswap  two same-size tensors' stored chunks swapped, each with its own checksum        rel-06a
  blindword  a 16-bit word 0x0000 -> 0xFFFF that Fletcher32 cannot see                       rel-06b
  userblock  the same checkpoint behind an HDF5 user block (valid)                           rel-07
  heapflip   one bit flipped in the global heap (variable-length strings)                    rel-08
  members    many extra (unknown, allowed) members in a block group (valid)                  rel-09
  filter     a tensor compressed with a filter format v1 does not name (lzf)
  link       a tensor replaced by a soft or external link
  bytes      random byte-level damage: bit flips, byte runs, truncation, zeroed blocks
Deterministic for a given seed. Needs numpy and h5py.
"""
import argparse
import json
import os
import random
import shutil

import h5py
import numpy as np

CLASSES = ["vds", "external", "masked", "unwritten", "meaning", "chunkswap", "blindword", "userblock",
           "heapflip", "members", "filter", "link", "bytes"]


def tensors(path):
    out = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype == np.float32 and (name.startswith("model/") or name.startswith("optimizer/")):
                out.append((name, obj.shape))
        f.visititems(visit)
    return out


def copy_with(src, dst, **kw):
    """Rewrites SRC into a new file DST via h5py (attributes and objects copied)."""
    with h5py.File(src, "r") as s, h5py.File(dst, "w", **kw) as d:
        for k, v in s.attrs.items():
            d.attrs.create(k, v, dtype=s.attrs.get_id(k).dtype)
        for k in s:
            s.copy(s[k], d, name=k)


def replace_dataset(path, name, make):
    with h5py.File(path, "r+", libver=("earliest", "v110")) as f:
        shape = f[name].shape
        data = f[name][()]
        del f[name]
        parent, leaf = name.rsplit("/", 1)
        make(f, f[parent], leaf, shape, data)


def mutate(cls, src, out, rng, ts, args):
    """Writes one mutant of class CLS; returns (expect, what)."""
    name, shape = rng.choice(ts)
    if cls == "vds":
        shutil.copy(src, out)
        other = rng.choice([t for t in ts if t[1] == shape])[0]
        target = name if rng.random() < 0.5 else other
        def make(f, g, leaf, shape, data):
            lay = h5py.VirtualLayout(shape=shape, dtype="f4")
            lay[...] = h5py.VirtualSource(".", "/" + target, shape=shape)
            g.create_virtual_dataset(leaf, lay, fillvalue=0)
        replace_dataset(out, name, make)
        return "refuse", f"{name} virtual onto {target}"
    if cls == "external":
        shutil.copy(src, out)
        raw = os.path.join(os.path.dirname(out), os.path.basename(out) + ".raw")
        def make(f, g, leaf, shape, data):
            data.astype("<f4").tofile(raw)
            g.create_dataset(leaf, shape=shape, dtype="<f4", external=[(raw, 0, data.nbytes)])
        replace_dataset(out, name, make)
        return "refuse", f"{name} external storage"
    if cls == "masked":
        shutil.copy(src, out)
        def make(f, g, leaf, shape, data):
            d = g.create_dataset(leaf, shape=shape, dtype="f4", chunks=shape, fletcher32=True)
            d.id.write_direct_chunk((0,) * len(shape), np.full(shape, 0.125, np.float32).tobytes(), filter_mask=1)
        replace_dataset(out, name, make)
        return "refuse", f"{name} chunk with Fletcher32 masked off"
    if cls == "unwritten":
        shutil.copy(src, out)
        fill = rng.choice([0.0, 0.75, -1.5])
        def make(f, g, leaf, shape, data):
            g.create_dataset(leaf, shape=shape, dtype="f4", chunks=shape, fletcher32=True, fillvalue=fill)
        replace_dataset(out, name, make)
        return "refuse", f"{name} never written (fill {fill})"
    if cls == "meaning":
        shutil.copy(src, out)
        with h5py.File(out, "r+", libver=("earliest", "v110")) as f:
            m = f["model"]
            c = len(m.attrs["input_std"])
            bad = rng.choice([np.nan, np.inf, -np.inf])
            choices = [
                ("input_std", lambda: m.attrs.__setitem__("input_std", np.array([rng.choice([0.0, -1.0, bad])] * c, np.float32))),
                ("input_mean", lambda: m.attrs.__setitem__("input_mean", np.array([bad] * c, np.float32))),
                ("bn_epsilon", lambda: m.attrs.__setitem__("bn_epsilon", np.float64(rng.choice([0.0, -1e-5, bad])))),
                ("bn_momentum", lambda: m.attrs.__setitem__("bn_momentum", np.float64(rng.choice([1.5, -0.1, bad])))),
                ("h", lambda: f["model/stages/0/blocks/0"].attrs.__setitem__("h", np.float64(rng.choice([-0.5, bad])))),
            ]
            if "optimizer" in f:
                choices.append(("optimizer", lambda: f["optimizer"].attrs.__setitem__(rng.choice(["momentum", "weight_decay"]), np.float64(bad))))
            def weight():
                a = f[name][()]
                a.flat[rng.randrange(a.size)] = bad
                f[name][...] = a
            choices.append(("weight", weight))
            what, fn = rng.choice(choices)
            fn()
        return "refuse", f"meaning: {what}"
    if cls == "chunkswap":
        b = bytearray(open(src, "rb").read())
        same = [(n, s) for n, s in ts if s == shape and n != name]
        if not same:
            return mutate("bytes", src, out, rng, ts, args)
        other = rng.choice(same)[0]
        with h5py.File(src, "r") as f:
            x, y = f[name].id.get_chunk_info(0), f[other].id.get_chunk_info(0)
        if x.size != y.size or bytes(b[x.byte_offset:x.byte_offset + x.size]) == bytes(b[y.byte_offset:y.byte_offset + y.size]):
            return mutate("bytes", src, out, rng, ts, args)
        b[x.byte_offset:x.byte_offset + x.size], b[y.byte_offset:y.byte_offset + y.size] = \
            b[y.byte_offset:y.byte_offset + y.size], b[x.byte_offset:x.byte_offset + x.size]
        open(out, "wb").write(b)
        return "refuse", f"chunks of {name} and {other} swapped"
    if cls == "blindword":
        b = bytearray(open(src, "rb").read())
        with h5py.File(src, "r") as f:
            spots = []
            for n, _ in ts:
                ci = f[n].id.get_chunk_info(0)
                for k in range(ci.byte_offset, ci.byte_offset + ci.size - 4, 2):
                    if b[k] == 0 and b[k + 1] == 0:
                        spots.append(k)
        if not spots:
            return mutate("bytes", src, out, rng, ts, args)
        k = rng.choice(spots)
        b[k] = b[k + 1] = 0xFF
        open(out, "wb").write(b)
        return "refuse", f"word at byte {k} 0000 -> ffff"
    if cls == "userblock":
        copy_with(src, out, libver=("v110", "v110"), userblock_size=rng.choice([512, 1024, 4096]))
        return "same", "user block"
    if cls == "heapflip":
        b = bytearray(open(src, "rb").read())
        spans = []
        at = b.find(b"GCOL\x01\x00\x00\x00")
        while at >= 0:
            size = int.from_bytes(b[at + 8:at + 16], "little")
            spans.append((at + 16, min(at + size, len(b))))
            at = b.find(b"GCOL\x01\x00\x00\x00", at + 1)
        if not spans:
            return mutate("bytes", src, out, rng, ts, args)
        lo, hi = rng.choice(spans)
        k = rng.randrange(lo, hi)
        b[k] ^= 1 << rng.randrange(8)
        open(out, "wb").write(b)
        return "refuse-or-same", f"global heap bit at byte {k}"
    if cls == "members":
        copy_with(src, out, libver=("v110", "v110"))
        with h5py.File(out, "r+") as f:
            g = f["model/stages/0/blocks"]
            for j in range(args.members):
                g.create_group(f"extra{j}")
        return "same", f"{args.members} extra members"
    if cls == "filter":
        shutil.copy(src, out)
        def make(f, g, leaf, shape, data):
            g.create_dataset(leaf, data=data, chunks=shape, compression="lzf")
        replace_dataset(out, name, make)
        return "refuse", f"{name} lzf"
    if cls == "link":
        shutil.copy(src, out)
        with h5py.File(out, "r+", libver=("earliest", "v110")) as f:
            data = f[name][()]
            f["notes/copy"] = data
            del f[name]
            if rng.random() < 0.5:
                f[name] = h5py.SoftLink("/notes/copy")
            else:
                f[name] = h5py.ExternalLink(os.path.basename(src), "/" + name)
        return "refuse", f"{name} soft/external link"
    if cls == "bytes":
        b = bytearray(open(src, "rb").read())
        kind = rng.choice(["flip", "flip", "run", "truncate", "zero"])
        if kind == "flip":
            for _ in range(rng.randint(1, 8)):
                k = rng.randrange(len(b)); b[k] ^= 1 << rng.randrange(8)
        elif kind == "run":
            k = rng.randrange(len(b)); n = rng.randint(2, 64)
            b[k:k + n] = bytes(rng.randrange(256) for _ in range(len(b[k:k + n])))
        elif kind == "truncate":
            b = b[:rng.randrange(len(b))]
        else:
            k = rng.randrange(len(b)); n = rng.randint(16, 4096)
            b[k:k + n] = bytes(len(b[k:k + n]))
        open(out, "wb").write(b)
        return "refuse-or-same", f"bytes: {kind}"
    raise SystemExit(f"unknown class {cls}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source")
    ap.add_argument("outdir")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", default=",".join(CLASSES))
    ap.add_argument("--members", type=int, default=3000, help="extra members of the 'members' class")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    rng = random.Random(args.seed)
    ts = tensors(args.source)
    with open(os.path.join(args.outdir, "manifest.jsonl"), "w") as man:
        for cls in args.classes.split(","):
            n = args.per_class if cls != "members" else max(1, min(args.per_class, 3))
            for i in range(n):
                out = os.path.join(args.outdir, f"{cls}-{i:05d}.h5")
                expect, what = mutate(cls, args.source, out, rng, ts, args)
                man.write(json.dumps({"file": os.path.basename(out), "class": cls, "expect": expect, "what": what}) + "\n")


if __name__ == "__main__":
    main()
