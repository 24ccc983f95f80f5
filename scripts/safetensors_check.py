#!/usr/bin/env python3
"""Check an mlres safetensors export with the safetensors package and the network's math.

    python3 scripts/safetensors_check.py model.safetensors --dataset cifar10 --data-dir DIR \
        [--n 64] [--expect mlres-logits.npy] [--torch] [--same-as OTHER.safetensors]

Loads the file with the reference reader (`safetensors.numpy.load_file`), runs the forward pass
of scripts/mlres_torch.py on the first N test images — `forward_numpy` (float64 NumPy) by
default, the PyTorch module (float64, strict load_state_dict) with --torch — and prints one JSON
object with the largest difference to --expect relative to the largest |logit|. With --same-as,
also how many tensors differ from OTHER's (name, dtype, shape or any byte) and which architecture
metadata keys differ (every key but the lineage summary, which names times and digests).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlres_torch  # noqa: E402
from onnx_check import read_images  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--n", type=int)
    ap.add_argument("--expect")
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--same-as")
    a = ap.parse_args()
    state, meta = mlres_torch.load_state(a.file)
    x = read_images(a.dataset, a.data_dir, a.n)
    if a.torch:
        import torch
        net = mlres_torch.load_mlres(a.file, dtype=torch.float64)
        with torch.no_grad():
            z = net(torch.from_numpy(x.astype(np.float64))).numpy()
    else:
        z = mlres_torch.forward_numpy(state, meta, x)
    report = {"tensors": len(state), "metadata_keys": sorted(meta), "images": int(len(x)),
              "engine": "torch" if a.torch else "numpy-float64"}
    if a.expect:
        ref = np.load(a.expect).astype(np.float64)
        diff = np.abs(z - ref)
        report.update({"max_abs_diff": float(diff.max()), "max_abs_logit": float(np.abs(ref).max()),
                       "rel_diff": float(diff.max() / max(np.abs(ref).max(), 1e-30)),
                       "class_agree": int((z.argmax(1) == ref.argmax(1)).sum())})
    if a.same_as:
        other, other_meta = mlres_torch.load_state(a.same_as)
        names = set(state) | set(other)
        report["tensors_differ"] = sum(1 for k in names if k not in state or k not in other
                                       or state[k].dtype != other[k].dtype or state[k].shape != other[k].shape
                                       or state[k].tobytes() != other[k].tobytes())
        keys = (set(meta) | set(other_meta)) - {"lineage"}
        report["metadata_differ"] = sorted(k for k in keys if meta.get(k) != other_meta.get(k))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
