#!/usr/bin/env python3
"""Check an mlres ONNX export with the ONNX tools themselves, on a test set.

    python3 scripts/onnx_check.py model.onnx --dataset fashion-mnist [--data-dir DIR] [--n 200] \
        [--expect mlres-logits.npy] [--out ort-logits.npy] [--batch 100]

1. `onnx.checker.check_model(full_check=True)` (with shape inference) must accept the model.
2. ONNX Runtime (CPUExecutionProvider) runs it on the first N test images of the dataset, read
   from its official files (CIFAR-10 `test_batch.bin`, Fashion-MNIST `t10k-images-idx3-ubyte[.gz]`)
   and scaled to [0, 1] exactly as `mlres-eval score` does; the graph standardises them itself.
3. With --expect (the N x K float32 logits of `mlres-eval score --save-logits`), prints the
   largest absolute difference, relative to the largest |logit|, and whether `class` equals the
   argmax of both.

Prints one JSON object. Exit status: 0 (the caller judges the numbers), 2 the checker refused the
model or a file could not be read.
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np


def read_images(dataset, data_dir, n):
    """[N, C, H, W] float32 pixels in [0, 1] of the test split."""
    if dataset == "cifar10":
        raw = np.fromfile(os.path.join(data_dir, "test_batch.bin"), dtype=np.uint8).reshape(-1, 3073)
        x = raw[:, 1:].reshape(-1, 3, 32, 32)
    elif dataset == "fashion-mnist":
        p = os.path.join(data_dir, "t10k-images-idx3-ubyte")
        data = open(p, "rb").read() if os.path.exists(p) else gzip.open(p + ".gz", "rb").read()
        count, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
        x = np.frombuffer(data, dtype=np.uint8, offset=16, count=count * rows * cols).reshape(count, 1, rows, cols)
    else:
        raise SystemExit(f"--dataset {dataset}: expected cifar10 or fashion-mnist")
    if n is not None:
        x = x[:n]
    return (x.astype(np.float32) / np.float32(255)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--n", type=int)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--expect")
    ap.add_argument("--out")
    a = ap.parse_args()

    import onnx
    import onnxruntime as ort

    model = onnx.load(a.model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        print(json.dumps({"checker": "failed", "error": str(e)[:2000]}))
        return 2
    opset = {o.domain: o.version for o in model.opset_import}.get("", None)

    x = read_images(a.dataset, a.data_dir, a.n)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    logits, classes = [], []
    for i in range(0, len(x), a.batch):
        z, c = sess.run(["logits", "class"], {"input": x[i:i + a.batch]})
        logits.append(z)
        classes.append(c)
    z = np.concatenate(logits)
    c = np.concatenate(classes)
    if a.out:
        np.save(a.out, z)
    report = {"checker": "ok", "ir_version": model.ir_version, "opset": opset, "images": int(len(x)),
              "inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output],
              "class_dtype": str(c.dtype), "class_is_argmax": bool(np.array_equal(c, z.argmax(1))),
              "batch_dim": model.graph.input[0].type.tensor_type.shape.dim[0].dim_param}
    if a.expect:
        ref = np.load(a.expect)
        if ref.shape != z.shape:
            report["error"] = f"shape {list(z.shape)} vs expected {list(ref.shape)}"
        else:
            diff = np.abs(z.astype(np.float64) - ref.astype(np.float64))
            report.update({"max_abs_diff": float(diff.max()), "max_abs_logit": float(np.abs(ref).max()),
                           "rel_diff": float(diff.max() / max(np.abs(ref).max(), 1e-30)),
                           "class_agree": int((c == ref.argmax(1)).sum())})
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
