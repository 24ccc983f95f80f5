#!/usr/bin/env python3
"""Fixtures of the interop tests (fixtures/interop/): a network made on the PyTorch side.

A small network of scripts/mlres_torch.py (2-2-2, widths 4,8,16, 3x32x32 input, 10 classes, mixed
h including an h = 0 block, non-trivial BN statistics and input standardisation), with seeded
random weights, is written as

  ref-net.safetensors   mlres_torch.save_mlres: state_dict + architecture metadata ("from PyTorch")
  ref-net.pt            a plain state_dict .pt (zip format of torch.save), no architecture
  ref-logits.npy        the network's eval-mode logits in float64 on the 20 images of
                          fixtures/datasets/cifar10/test_batch.bin (pixels / 255), [20, 10]
  ref-net.json          provenance: which engine made the files, the architecture, and the largest
                          difference between the PyTorch forward and mlres_torch.forward_numpy

With PyTorch installed, PyTorch does everything (nn.Module forward in float64, torch.save). Without
it the same files come from NumPy: the weights from a NumPy generator, the logits from
mlres_torch.forward_numpy (float64), and the .pt from `write_pt_without_torch`, which writes
torch.save's zip layout (archive/data.pkl with torch._utils._rebuild_tensor_v2 and
torch.FloatStorage references, archive/data/<key>, archive/byteorder, archive/version) with the
standard pickle module. ref-net.json says which. The tests import both files with mlres (the
.pt through scripts/pt_to_safetensors.py), score them with `mlres-eval score --save-logits`, and
compare with ref-logits.npy; CI needs no PyTorch.

The other direction, with `--mlres-bin DIR` (a folder holding built mlres-train and mlres-surgery)
and PyTorch installed:

  mlres-net.h5                   a checkpoint made by mlres: a 2-1-3 network (widths 4,8,16) trained
                                   2 epochs on fixtures/datasets/cifar10 (so BN statistics are
                                   non-trivial), then h set per block to 0.5 / 0 / 1.25 by
                                   `mlres-surgery set-h`
  mlres-net.safetensors          `mlres-surgery export mlres-net.h5 --format safetensors`
  mlres-net.torch-logits.npy     scripts/mlres_torch.load_mlres(mlres-net.safetensors) as an
                                   nn.Module, forward in float64 by PyTorch on the 20 test images
  mlres-net.json                 provenance (torch version, sha256 of both files)

The test exports mlres-net.h5 again with the mlres under test, checks the export is the same
tensors as mlres-net.safetensors, and compares `mlres-eval score --save-logits` with the PyTorch
logits.

Run: python3 scripts/make_interop_fixtures.py [--mlres-bin .build/release]
     (numpy + safetensors; torch if available; --mlres-bin needs torch)
"""
import collections
import io
import json
import os
import pickle
import sys
import types
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlres_torch  # noqa: E402
from onnx_check import read_images  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "fixtures", "interop")
WIDTHS = [4, 8, 16]
H = [[1.0, 0.5], [0.0, 0.75], [1.0, 0.25]]
INPUT = [3, 32, 32]
CLASSES = 10
MEAN = [0.4914, 0.4822, 0.4465]
STD = [0.247, 0.243, 0.261]


def numpy_state(seed):
    """A state_dict of the network as float32 NumPy arrays (num_batches_tracked int64 0)."""
    rng = np.random.default_rng(seed)
    sd, cin = collections.OrderedDict(), WIDTHS[0]
    sd["stem.conv.weight"] = rng.normal(0, (2.0 / (INPUT[0] * 9)) ** 0.5, (WIDTHS[0], INPUT[0], 3, 3))

    def bn(p, c):
        sd[p + ".weight"] = rng.uniform(0.5, 1.5, c)
        sd[p + ".bias"] = rng.normal(0, 0.2, c)
        sd[p + ".running_mean"] = rng.normal(0, 0.2, c)
        sd[p + ".running_var"] = rng.uniform(0.5, 1.5, c)
        sd[p + ".num_batches_tracked"] = np.array(0, dtype=np.int64)
    for s, (w, hs) in enumerate(zip(WIDTHS, H)):
        for b in range(len(hs)):
            p = f"stages.{s}.blocks.{b}"
            bn(p + ".bn1", cin)
            sd[p + ".conv1.weight"] = rng.normal(0, (2.0 / (cin * 9)) ** 0.5, (w, cin, 3, 3))
            bn(p + ".bn2", w)
            sd[p + ".conv2.weight"] = rng.normal(0, (2.0 / (w * 9)) ** 0.5, (w, w, 3, 3))
            cin = w
    bn("head.bn", cin)
    bound = 1 / cin ** 0.5
    sd["head.fc.weight"] = rng.uniform(-bound, bound, (CLASSES, cin))
    sd["head.fc.bias"] = rng.uniform(-bound, bound, CLASSES)
    return collections.OrderedDict((k, v if v.dtype == np.int64 else v.astype(np.float32)) for k, v in sd.items())


def write_pt_without_torch(sd, path):
    """torch.save(state_dict)'s zip layout, written with the standard pickle module."""
    fake_torch, fake_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class LongStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise RuntimeError("never called")
    for obj, mod, name in ((FloatStorage, "torch", "FloatStorage"), (LongStorage, "torch", "LongStorage"),
                           (_rebuild_tensor_v2, "torch._utils", "_rebuild_tensor_v2")):
        obj.__module__, obj.__qualname__ = mod, name
    fake_torch.FloatStorage, fake_torch.LongStorage, fake_torch._utils = FloatStorage, LongStorage, fake_utils
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    saved = {m: sys.modules.get(m) for m in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = fake_torch, fake_utils

    class Storage:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class Tensor:
        def __init__(self, storage, shape):
            self.storage, self.shape = storage, shape

        def __reduce__(self):
            stride, acc = [], 1
            for d in reversed(self.shape):
                stride.insert(0, acc)
                acc *= d
            return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                cls = LongStorage if obj.array.dtype == np.int64 else FloatStorage
                return ("storage", cls, obj.key, "cpu", obj.array.size)
            return None

    try:
        storages = [Storage(str(i), np.ascontiguousarray(v)) for i, v in enumerate(sd.values())]
        obj = collections.OrderedDict((k, Tensor(st, list(v.shape))) for (k, v), st in zip(sd.items(), storages))
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(obj)
    finally:
        for m, v in saved.items():
            if v is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = v
    def entry(name):   # fixed timestamps: the same inputs give the same bytes
        return zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(entry("archive/data.pkl"), buf.getvalue())
        z.writestr(entry("archive/byteorder"), "little")
        for st in storages:
            z.writestr(entry(f"archive/data/{st.key}"), st.array.astype(st.array.dtype.newbyteorder("<")).tobytes())
        z.writestr(entry("archive/version"), "3\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    st_path, pt_path = os.path.join(OUT, "ref-net.safetensors"), os.path.join(OUT, "ref-net.pt")
    x = read_images("cifar10", os.path.join(ROOT, "fixtures", "datasets", "cifar10"), None)
    if torch is not None:
        torch.manual_seed(20181)
        net = mlres_torch.build_module(WIDTHS, H, INPUT[0], CLASSES, MEAN, STD)
        with torch.no_grad():
            for name, t in net.state_dict().items():
                if name.endswith("conv.weight") or name.endswith("conv1.weight") or name.endswith("conv2.weight"):
                    t.normal_(0, (2.0 / (t.shape[1] * 9)) ** 0.5)
                elif name.endswith("running_mean") or (name.endswith(".bias") and ".bn" in name):
                    t.normal_(0, 0.2)
                elif name.endswith("running_var") or (name.endswith(".weight") and ".bn" in name):
                    t.uniform_(0.5, 1.5)
        net.eval()
        mlres_torch.save_mlres(net, st_path, WIDTHS, H, INPUT, CLASSES, MEAN, STD)
        torch.save(net.state_dict(), pt_path)
        ref = mlres_torch.load_mlres(st_path, dtype=torch.float64)   # the float32 weights as saved
        with torch.no_grad():
            z = ref(torch.from_numpy(x.astype(np.float64))).numpy()
        engine = f"torch {torch.__version__}: nn.Module forward in float64, torch.save"
    else:
        from safetensors.numpy import save_file
        sd = numpy_state(20181)
        meta = {"format": "pt", "mlres_format": "mlres.state_dict.v1", "architecture": "preact-resnet",
                "shortcut": "zero-pad", "stage_blocks": json.dumps([len(h) for h in H]),
                "stage_widths": json.dumps(WIDTHS), "input_shape": json.dumps(INPUT),
                "num_classes": json.dumps(CLASSES), "h": json.dumps(H), "input_mean": json.dumps(MEAN),
                "input_std": json.dumps(STD), "bn_epsilon": json.dumps(1e-5)}
        save_file(dict(sd), st_path, metadata=meta)
        write_pt_without_torch(sd, pt_path)
        z = None
        engine = ("numpy (PyTorch not installed): weights from numpy.random.default_rng, logits from "
                  "mlres_torch.forward_numpy in float64, .pt from write_pt_without_torch")
    zn = mlres_torch.forward_numpy(*mlres_torch.load_state(st_path), x)
    if z is None:
        z = zn
    np.save(os.path.join(OUT, "ref-logits.npy"), z)
    info = {"generator": "scripts/make_interop_fixtures.py", "engine": engine,
            "stage_widths": WIDTHS, "h": H, "input_shape": INPUT, "num_classes": CLASSES,
            "input_mean": MEAN, "input_std": STD, "images": int(len(x)),
            "data": "fixtures/datasets/cifar10/test_batch.bin",
            "max_abs_diff_torch_vs_forward_numpy": float(np.abs(z - zn).max()) if torch is not None else None,
            "max_abs_logit": float(np.abs(z).max())}
    with open(os.path.join(OUT, "ref-net.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info))


def sha256(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def from_mlres(bin_dir):
    """mlres → safetensors → PyTorch: the export direction (see the module docstring)."""
    import subprocess
    import tempfile
    if torch is None:
        sys.exit("make_interop_fixtures: --mlres-bin needs PyTorch (the point is a PyTorch forward)")
    cifar = os.path.join(ROOT, "fixtures", "datasets", "cifar10")
    h5, st = os.path.join(OUT, "mlres-net.h5"), os.path.join(OUT, "mlres-net.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        def run(*args):
            subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL)
        run(f"{bin_dir}/mlres-train", "--dataset", "cifar10", "--data-dir", cifar, "--blocks", "2-1-3",
            "--widths", "4,8,16", "--epochs", "2", "--batch", "8", "--seed", "3", "--threads", "1",
            "--out", f"{tmp}/run")
        prev = f"{tmp}/run/last.h5"
        for k, (block, h) in enumerate([("0.1", "0.5"), ("1.0", "0"), ("2.2", "1.25")]):
            nxt = h5 if k == 2 else f"{tmp}/h{k}.h5"
            run(f"{bin_dir}/mlres-surgery", "set-h", prev, "--block", block, "--h", h, "-o", nxt, "--force")
            prev = nxt
    if os.path.exists(st):
        os.remove(st)
    subprocess.run([f"{bin_dir}/mlres-surgery", "export", h5, "--format", "safetensors", "-o", st],
                   check=True, stdout=subprocess.DEVNULL)
    x = read_images("cifar10", cifar, None)
    net = mlres_torch.load_mlres(st, dtype=torch.float64)
    net.eval()
    with torch.no_grad():
        z = net(torch.from_numpy(x.astype(np.float64))).numpy()
    np.save(os.path.join(OUT, "mlres-net.torch-logits.npy"), z)
    zn = mlres_torch.forward_numpy(*mlres_torch.load_state(st), x)
    info = {"generator": "scripts/make_interop_fixtures.py --mlres-bin", "engine":
            f"torch {torch.__version__}: mlres_torch.load_mlres nn.Module, forward in float64",
            "checkpoint": "mlres-net.h5", "checkpoint_sha256": sha256(h5),
            "export": "mlres-net.safetensors", "export_sha256": sha256(st), "images": int(len(x)),
            "data": "fixtures/datasets/cifar10/test_batch.bin",
            "max_abs_diff_torch_vs_forward_numpy": float(np.abs(z - zn).max()),
            "max_abs_logit": float(np.abs(z).max())}
    with open(os.path.join(OUT, "mlres-net.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--mlres-bin":
        main()
        from_mlres(os.path.abspath(sys.argv[2]))
    elif len(sys.argv) == 1:
        main()
    else:
        sys.exit("usage: make_interop_fixtures.py [--mlres-bin DIR]")
