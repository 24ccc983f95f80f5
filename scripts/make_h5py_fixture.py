#!/usr/bin/env python3
"""Writes fixtures/h5py/resnet-1-1.h5, a format v1 checkpoint made with numpy + h5py only
(no mlres code), and fixtures/h5py/resnet-1-1.json, which documents what the file holds:
per tensor its shape, the SHA-256 of its float32 little-endian bytes and its float64 sum,
plus every attribute value. The Swift test MLResHDF5Tests/H5pyInteropTests reads the .h5 with
our reader and checks it against the .json.

Network: blocks 1-1, widths 4,8, input 1x8x8, 3 classes (docs/checkpoint-format.md).
Deterministic: fixed seed, fixed timestamps. h5py's default (oldest compatible) file layout is
used on purpose, so that the reader is exercised on a layout our writer never produces.

    python3 scripts/make_h5py_fixture.py            # needs numpy and h5py
"""
import hashlib
import json
import os

import h5py
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "h5py")
BLOCKS, WIDTHS, INPUT, CLASSES = [1, 1], [4, 8], [1, 8, 8], 3
rng = np.random.default_rng(20261129)


def normal(shape, scale):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def bn(c):
    return {"weight": rng.uniform(0.5, 1.5, c).astype(np.float32),
            "bias": normal(c, 0.1),
            "running_mean": normal(c, 0.2),
            "running_var": rng.uniform(0.5, 2.0, c).astype(np.float32)}


# The network, tensor by tensor, in the canonical order of the format.
tensors = {"model/stem/conv/weight": normal((WIDTHS[0], INPUT[0], 3, 3), 0.3)}
blocks = []
for s, n in enumerate(BLOCKS):
    for b in range(n):
        cout = WIDTHS[s]
        cin = WIDTHS[s - 1] if (b == 0 and s > 0) else cout
        stride = 2 if (b == 0 and s > 0) else 1
        p = f"model/stages/{s}/blocks/{b}"
        for k, v in bn(cin).items():
            tensors[f"{p}/bn1/{k}"] = v
        tensors[f"{p}/conv1/weight"] = normal((cout, cin, 3, 3), 0.2)
        for k, v in bn(cout).items():
            tensors[f"{p}/bn2/{k}"] = v
        tensors[f"{p}/conv2/weight"] = normal((cout, cout, 3, 3), 0.2)
        blocks.append({"path": p, "h": 0.5 + 0.5 * s, "stride": stride, "in_channels": cin,
                       "out_channels": cout, "origin": "init" if s == 0 else "copy:stages/0/blocks/0"})
for k, v in bn(WIDTHS[-1]).items():
    tensors[f"model/head/bn/{k}"] = v
tensors["model/head/fc/weight"] = normal((CLASSES, WIDTHS[-1]), 0.3)
tensors["model/head/fc/bias"] = normal((CLASSES,), 0.1)
trainable = [p for p in tensors if not p.split("/")[-1].startswith("running")]
momentum = {p: normal(tensors[p].shape, 0.01) for p in trainable}

class_names = ["zero", "one", "two"]
history = {"epoch": np.array([1, 2], np.int64), "global_step": np.array([4, 8], np.int64),
           "lr": np.array([0.1, 0.05]), "train_loss": np.array([1.1, 0.9]),
           "train_error": np.array([0.5, 0.4]), "test_loss": np.array([1.2, 1.0]),
           "test_error": np.array([0.55, 0.45]), "wall_seconds": np.array([0.5, 1.0]),
           "blocks": np.array([2, 2], np.int64)}
rng_state = np.array([7, 2**64 - 1, 12345678901234567890], np.uint64)
config = json.dumps({"dataset": "synthetic", "batch_size": 4, "seed": 0}, sort_keys=True)
lineage = [json.dumps({"op": "init", "args": {"blocks": BLOCKS, "widths": WIDTHS, "seed": 0},
                       "at": "2026-11-29T00:00:00Z", "tool": "make_h5py_fixture.py"}, sort_keys=True, separators=(",", ":")),
           json.dumps({"op": "train", "args": {"epochs": 2}, "at": "2026-11-29T00:01:00Z",
                       "tool": "make_h5py_fixture.py", "parent_sha256": "0" * 64}, sort_keys=True, separators=(",", ":"))]


def put(f, path, arr, compress):
    opts = {"shuffle": True, "compression": "gzip", "compression_opts": 4} if compress else {}
    f.create_dataset(path, data=arr, chunks=arr.shape, fletcher32=True, **opts)


os.makedirs(OUT, exist_ok=True)
h5path = os.path.join(OUT, "resnet-1-1.h5")
if os.path.exists(h5path):
    os.remove(h5path)
with h5py.File(h5path, "w") as f:
    f.attrs["format"] = "mlres.checkpoint"
    f.attrs["format_version"] = np.int64(1)
    f.attrs["created_by"] = "scripts/make_h5py_fixture.py"
    f.attrs["created_at"] = "2026-11-29T00:00:00Z"
    m = f.create_group("model")
    m.attrs["architecture"] = "preact-resnet"
    m.attrs["shortcut"] = "zero-pad"
    m.attrs["input_shape"] = np.array(INPUT, np.int64)
    m.attrs["num_classes"] = np.int64(CLASSES)
    m.attrs["stage_widths"] = np.array(WIDTHS, np.int64)
    m.attrs["stage_blocks"] = np.array(BLOCKS, np.int64)
    m.attrs["bn_epsilon"] = np.float64(1e-5)
    m.attrs["bn_momentum"] = np.float64(0.1)
    m.attrs["input_mean"] = np.array([0.5], np.float32)
    m.attrs["input_std"] = np.array([0.25], np.float32)
    m.attrs.create("class_names", class_names, dtype=h5py.string_dtype())
    m.attrs["comment"] = "an unknown attribute the reader must ignore"
    for blk in blocks:
        g = f.require_group(blk["path"])
        g.attrs["h"] = np.float64(blk["h"])
        for k in ("stride", "in_channels", "out_channels"):
            g.attrs[k] = np.int64(blk[k])
        g.attrs["origin"] = blk["origin"]
    for i, (p, arr) in enumerate(tensors.items()):
        put(f, p, arr, compress=(i % 2 == 1))        # every other tensor shuffle+gzip
    o = f.create_group("optimizer")
    o.attrs["kind"] = "sgd"
    o.attrs["momentum"] = np.float64(0.9)
    o.attrs["weight_decay"] = np.float64(5e-4)
    o.attrs["nesterov"] = np.int64(0)
    for p, arr in momentum.items():
        put(f, "optimizer/momentum/" + p, arr, compress=False)
    t = f.create_group("training")
    for k, v in {"epoch": 2, "global_step": 8, "cycle": 0, "step_in_cycle": 8, "cycle_steps": 40}.items():
        t.attrs[k] = np.int64(v)
    t.attrs["rng_state"] = rng_state
    t.attrs["config"] = config
    for k, v in history.items():
        t.create_dataset("history/" + k, data=v)
    f.create_dataset("lineage", data=lineage, dtype=h5py.string_dtype())
    f.create_dataset("extras/notes", data=np.arange(3, dtype=np.int32))   # unknown: ignored


def describe(arr):
    a = np.ascontiguousarray(arr, dtype="<f4")
    return {"shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
            "sum": float(a.astype(np.float64).sum())}


doc = {
    "file": "resnet-1-1.h5",
    "written_with": "numpy + h5py (any 3.x), seed 20261129",
    "architecture": {"stage_blocks": BLOCKS, "stage_widths": WIDTHS, "input_shape": INPUT,
                     "num_classes": CLASSES, "parameters": int(sum(tensors[p].size for p in trainable))},
    "h": [[b["h"] for b in blocks if b["path"].startswith(f"model/stages/{s}/")] for s in range(len(BLOCKS))],
    "origins": [b["origin"] for b in blocks],
    "class_names": class_names,
    "input_mean": [0.5], "input_std": [0.25],
    "tensors": {p: describe(a) for p, a in tensors.items()},
    "momentum": {p: describe(a) for p, a in momentum.items()},
    "optimizer": {"kind": "sgd", "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False},
    "training": {"epoch": 2, "global_step": 8, "cycle": 0, "step_in_cycle": 8, "cycle_steps": 40,
                 "rng_state": [str(x) for x in rng_state], "config": config,
                 "history": {k: [float(x) for x in v] for k, v in history.items()}},
    "lineage": lineage,
}
with open(os.path.join(OUT, "resnet-1-1.json"), "w") as fh:
    json.dump(doc, fh, indent=1, sort_keys=True)
    fh.write("\n")
print("wrote", h5path, "and resnet-1-1.json:", len(tensors), "tensors,", doc["architecture"]["parameters"], "parameters")
