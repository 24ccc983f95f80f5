#!/usr/bin/env python3
# Used by scripts/bench-precision.sh: python scripts/ort-resnet.py --blocks 2-2-2 --widths 16,32,64 --batch 100 [--profile]
"""ONNX Runtime (CPU) inference timing of the paper's pre-activation ResNets, built directly
with onnx.helper (no PyTorch needed): stem conv, blocks BN-ReLU-conv-BN-ReLU-conv(h folded)
+ shortcut (identity, or stride-2 subsample + zero-pad channels), head BN-ReLU-GAP-FC.
Random weights; timing only. Prints one JSON object. --profile writes ORT's per-node profile
and prints the time share per op type."""
import argparse, json, time, statistics, os, sys, collections
import numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("--blocks", default="2-2-2"); p.add_argument("--widths", default="16,32,64")
p.add_argument("--batch", type=int, default=100); p.add_argument("--steps", type=int, default=30)
p.add_argument("--warmup", type=int, default=3); p.add_argument("--threads", type=int, default=2)
p.add_argument("--profile", action="store_true")
a = p.parse_args()
blocks = [int(x) for x in a.blocks.split("-")]; widths = [int(x) for x in a.widths.split(",")]
rng = np.random.default_rng(0)
nodes, inits = [], []
cnt = [0]
def name(s): cnt[0] += 1; return f"{s}{cnt[0]}"
def const(arr):
    n = name("c"); inits.append(numpy_helper.from_array(np.asarray(arr), n)); return n
def conv(x, cin, cout, stride, scale=1.0):
    w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (9 * cin)) * scale).astype(np.float32)
    y = name("conv"); nodes.append(helper.make_node("Conv", [x, const(w)], [y], kernel_shape=[3, 3],
                                                    pads=[1, 1, 1, 1], strides=[stride, stride])); return y
def bnrelu(x, c):
    g = rng.uniform(0.5, 1.5, c).astype(np.float32); b = rng.uniform(-.3, .3, c).astype(np.float32)
    m = rng.uniform(-.2, .2, c).astype(np.float32); v = rng.uniform(.5, 1.5, c).astype(np.float32)
    y = name("bn"); nodes.append(helper.make_node("BatchNormalization", [x, const(g), const(b), const(m), const(v)], [y], epsilon=1e-5))
    r = name("relu"); nodes.append(helper.make_node("Relu", [y], [r])); return r
x = "input"; c = widths[0]
y = conv(x, 3, c, 1); H = 32
h = 1.0
for s, (nb, w) in enumerate(zip(blocks, widths)):
    for b in range(nb):
        stride = 2 if (s > 0 and b == 0) else 1
        a1 = bnrelu(y, c); z1 = conv(a1, c, w, stride); a2 = bnrelu(z1, w); f = conv(a2, w, w, 1, scale=h)
        if stride != 1 or c != w:
            sub = name("sub"); nodes.append(helper.make_node("Slice", [y, const(np.array([0, 0], np.int64)),
                  const(np.array([H, H], np.int64)), const(np.array([2, 3], np.int64)), const(np.array([stride, stride], np.int64))], [sub]))
            off = (w - c) // 2
            pad = name("pad"); nodes.append(helper.make_node("Pad", [sub, const(np.array([0, off, 0, 0, 0, w - c - off, 0, 0], np.int64))], [pad]))
            sc = pad; H = (H - 1) // stride + 1
        else:
            sc = y
        out = name("add"); nodes.append(helper.make_node("Add", [sc, f], [out])); y = out; c = w
hb = bnrelu(y, c)
gap = name("gap"); nodes.append(helper.make_node("GlobalAveragePool", [hb], [gap]))
fl = name("flat"); nodes.append(helper.make_node("Flatten", [gap], [fl]))
wfc = (rng.standard_normal((10, c)) * 0.1).astype(np.float32)
nodes.append(helper.make_node("Gemm", [fl, const(wfc), const(np.zeros(10, np.float32))], ["logits"], transB=1))
graph = helper.make_graph(nodes, "preact_resnet", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [a.batch, 3, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [a.batch, 10])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]); model.ir_version = 8
onnx.checker.check_model(model)
so = ort.SessionOptions(); so.intra_op_num_threads = a.threads; so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
if a.profile: so.enable_profiling = True
sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
xin = rng.standard_normal((a.batch, 3, 32, 32)).astype(np.float32)
for _ in range(a.warmup): sess.run(None, {"input": xin})
ts = []
for _ in range(a.steps):
    t0 = time.perf_counter(); sess.run(None, {"input": xin}); ts.append(time.perf_counter() - t0)
med = statistics.median(ts)
res = {"framework": "ort", "version": ort.__version__, "images_per_s": round(a.batch / med, 1), "median_step_s": round(med, 6),
       "blocks": a.blocks, "widths": a.widths, "batch": a.batch, "threads": a.threads}
if a.profile:
    f = sess.end_profiling(); ev = json.load(open(f)); os.remove(f)
    by = collections.Counter()
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by[e["args"]["op_name"]] += e["dur"]
    tot = sum(by.values()); res["profile_share"] = {k: round(v / tot, 3) for k, v in by.most_common()}
print(json.dumps(res))
