#!/usr/bin/env python3
"""Time ONNX Runtime inference on an ONNX model (e.g. mlres's own export), like `mlres-train bench
--mode infer` times mlres: median of STEPS timed runs after WARMUP, one JSON object.

    python3 scripts/bench_onnx.py model.onnx --batch 100 --steps 30 [--warmup 3] [--threads 2]

Input: standard-normal values of the model's input shape (batch dimension = --batch), as mlres's
bench feeds its engine. ORT's default graph optimisations (level ALL: BN folding, Conv+Add+Relu
fusion) are on, sequential execution, intra-op threads = --threads.
"""
import argparse
import json
import resource
import time

import numpy as np
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--batch", type=int, default=100)
ap.add_argument("--steps", type=int, default=30)
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()

opts = ort.SessionOptions()
opts.intra_op_num_threads = a.threads
opts.inter_op_num_threads = 1
opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [a.batch] + [int(d) for d in inp.shape[1:]]
x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
for _ in range(a.warmup):
    sess.run(["logits"], {inp.name: x})
times = []
for _ in range(a.steps):
    t0 = time.perf_counter()
    sess.run(["logits"], {inp.name: x})
    times.append(time.perf_counter() - t0)
times.sort()
median = times[len(times) // 2] if len(times) % 2 else (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2
print(json.dumps({"images_per_s": round(a.batch / median, 1), "median_step_s": round(median, 6),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "threads": a.threads, "batch": a.batch, "framework": "ort-on-mlres-export",
                  "onnxruntime": ort.__version__}))
