#!/usr/bin/env python3
"""Cross-check fixtures for the mlres engine, computed by PyTorch (float64).

Builds a small pre-activation multi-level ResNet exactly as docs/checkpoint-format (v1) defines
it -- Y_{j+1} = P(Y_j) + h_j * F(Y_j), F = conv2(relu(bn2(conv1(relu(bn1(Y)))))), the zero-pad
shortcut (Y[:, :, ::2, ::2], Cin input channels at offset (Cout-Cin)//2 of Cout), stem conv,
head relu(bn) -> global average pool -> linear -- from a fixed checkpoint drawn here with a fixed
seed, and records for a fixed input batch:

  * eval-mode logits (running statistics),
  * a train-mode step: mean cross-entropy, the gradient of every trainable tensor, and the BN
    running statistics after the forward pass (momentum 0.1, unbiased running variance),
  * two SGD steps (torch.optim.SGD, lr 0.1, momentum 0.9, weight decay 2e-4) on that batch:
    the parameters, running statistics and momentum buffers afterwards.

Output (small, committed): fixtures/torch/tiny.json (architecture, labels, scalars and an index
of tensors) + fixtures/torch/tiny.bin (every tensor, float32 little-endian, C order), and
fixtures/torch/tiny.h5, the same checkpoint as an mlres v1 HDF5 file written by h5py (if h5py is
installed), with its eval logits in tiny.bin under "eval/logits".

Run:  /root/peers-venv/bin/python scripts/make_torch_fixtures.py   (needs torch and numpy)
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "torch")
INPUT_SHAPE = (3, 8, 8)
WIDTHS = (4, 6, 10)
BLOCKS = (1, 2, 1)
H = (0.5, 1.0, 0.75, 0.25)          # per block, in order
CLASSES = 5
BATCH = 6
EPS = 1e-5
BN_MOMENTUM = 0.1
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 2e-4
rng = np.random.default_rng(20180430)


def f32(a):
    """Values as float32 (the checkpoint's precision), returned as float64 tensors."""
    return torch.tensor(np.asarray(a, dtype=np.float32).astype(np.float64))


def bn_params(c):
    return {"weight": f32(rng.uniform(0.5, 1.5, c)), "bias": f32(rng.uniform(-0.3, 0.3, c)),
            "running_mean": f32(rng.uniform(-0.2, 0.2, c)), "running_var": f32(rng.uniform(0.5, 1.5, c))}


def he(shape):
    fan_in = shape[1] * shape[2] * shape[3]
    return f32(rng.normal(0, np.sqrt(2.0 / fan_in), shape))


# ---- the checkpoint ---------------------------------------------------------------------------
blocks = []   # (path, stride, cin, cout, h)
P = {}        # path -> tensor (trainable and running statistics)
P["model/stem/conv/weight"] = he((WIDTHS[0], INPUT_SHAPE[0], 3, 3))
cin, k = WIDTHS[0], 0
for s, (n, w) in enumerate(zip(BLOCKS, WIDTHS)):
    for b in range(n):
        stride = 2 if (s > 0 and b == 0) else 1
        path = f"model/stages/{s}/blocks/{b}"
        for name, t in bn_params(cin).items():
            P[f"{path}/bn1/{name}"] = t
        P[f"{path}/conv1/weight"] = he((w, cin, 3, 3))
        for name, t in bn_params(w).items():
            P[f"{path}/bn2/{name}"] = t
        P[f"{path}/conv2/weight"] = he((w, w, 3, 3))
        blocks.append((path, stride, cin, w, H[k]))
        cin, k = w, k + 1
for name, t in bn_params(cin).items():
    P[f"model/head/bn/{name}"] = t
bound = 1 / np.sqrt(cin)
P["model/head/fc/weight"] = f32(rng.uniform(-bound, bound, (CLASSES, cin)))
P["model/head/fc/bias"] = f32(rng.uniform(-bound, bound, CLASSES))
TRAINABLE = [p for p in P if not p.split("/")[-1].startswith("running")]

x = f32(rng.normal(0, 1, (BATCH,) + INPUT_SHAPE))
labels = torch.tensor(rng.integers(0, CLASSES, BATCH))


# ---- the network, written out with torch.nn.functional ------------------------------------------
def bn_relu(y, params, prefix, training):
    return F.relu(F.batch_norm(y, params[prefix + "/running_mean"], params[prefix + "/running_var"],
                               params[prefix + "/weight"], params[prefix + "/bias"],
                               training=training, momentum=BN_MOMENTUM, eps=EPS))


def shortcut(y, cout, stride):
    y = y[:, :, ::stride, ::stride]
    cin = y.shape[1]
    before = (cout - cin) // 2
    return F.pad(y, (0, 0, 0, 0, before, cout - cin - before))


def forward(params, x, training):
    y = F.conv2d(x, params["model/stem/conv/weight"], padding=1)
    for path, stride, cin, cout, h in blocks:
        a1 = bn_relu(y, params, path + "/bn1", training)
        z1 = F.conv2d(a1, params[path + "/conv1/weight"], stride=stride, padding=1)
        a2 = bn_relu(z1, params, path + "/bn2", training)
        f = F.conv2d(a2, params[path + "/conv2/weight"], padding=1)
        p = shortcut(y, cout, stride) if (stride != 1 or cin != cout) else y
        y = p + h * f
    a = bn_relu(y, params, "model/head/bn", training)
    return F.linear(a.mean(dim=(2, 3)), params["model/head/fc/weight"], params["model/head/fc/bias"])


def fresh():
    return {p: t.clone().requires_grad_(p in TRAINABLE) for p, t in P.items()}


out = {}   # name -> array
for p, t in P.items():
    out["param/" + p] = t
out["input"] = x

with torch.no_grad():
    out["eval/logits"] = forward(fresh(), x, training=False)

params = fresh()
loss = F.cross_entropy(forward(params, x, training=True), labels)
loss.backward()
for p in TRAINABLE:
    out["train/grad/" + p] = params[p].grad
for p in P:
    if p not in TRAINABLE:
        out["train/running/" + p] = params[p].detach()

params = fresh()
opt = torch.optim.SGD([params[p] for p in TRAINABLE], lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
sgd_losses = []
for _ in range(2):
    opt.zero_grad()
    loss2 = F.cross_entropy(forward(params, x, training=True), labels)
    loss2.backward()
    opt.step()
    sgd_losses.append(loss2.item())
for p in P:
    out["sgd2/param/" + p] = params[p].detach()
for p in TRAINABLE:
    out["sgd2/momentum/" + p] = opt.state[params[p]]["momentum_buffer"]

# ---- write -------------------------------------------------------------------------------------
os.makedirs(OUT, exist_ok=True)
index, offset = {}, 0
with open(os.path.join(OUT, "tiny.bin"), "wb") as fh:
    for name, t in out.items():
        a = np.ascontiguousarray(t.detach().numpy().astype("<f4"))
        fh.write(a.tobytes())
        index[name] = {"offset": offset, "shape": list(a.shape)}
        offset += a.size
meta = {
    "generator": "scripts/make_torch_fixtures.py (torch %s, float64)" % torch.__version__,
    "input_shape": list(INPUT_SHAPE), "stage_widths": list(WIDTHS), "stage_blocks": list(BLOCKS),
    "h": list(H), "num_classes": CLASSES, "batch": BATCH, "bn_epsilon": EPS,
    "bn_momentum": BN_MOMENTUM, "lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
    "labels": labels.tolist(), "train_loss": loss.item(), "sgd_losses": sgd_losses,
    "trainable": TRAINABLE, "tensors": index, "float_count": offset,
}
with open(os.path.join(OUT, "tiny.json"), "w") as fh:
    json.dump(meta, fh, indent=1)

try:
    import h5py
except ImportError:
    h5py = None
if h5py is not None:
    path = os.path.join(OUT, "tiny.h5")
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "mlres.checkpoint"
        f.attrs["format_version"] = np.int64(1)
        f.attrs["created_by"] = "scripts/make_torch_fixtures.py"
        f.attrs["created_at"] = "2026-01-01T00:00:00Z"
        m = f.create_group("model")
        m.attrs["architecture"] = "preact-resnet"
        m.attrs["shortcut"] = "zero-pad"
        m.attrs["input_shape"] = np.array(INPUT_SHAPE, dtype=np.int64)
        m.attrs["num_classes"] = np.int64(CLASSES)
        m.attrs["stage_widths"] = np.array(WIDTHS, dtype=np.int64)
        m.attrs["stage_blocks"] = np.array(BLOCKS, dtype=np.int64)
        m.attrs["bn_epsilon"] = np.float64(EPS)
        m.attrs["bn_momentum"] = np.float64(BN_MOMENTUM)
        m.attrs["input_mean"] = np.zeros(INPUT_SHAPE[0], dtype=np.float32)
        m.attrs["input_std"] = np.ones(INPUT_SHAPE[0], dtype=np.float32)
        for bpath, stride, cin, cout, h in blocks:
            g = f.require_group(bpath)
            g.attrs["h"] = np.float64(h)
            g.attrs["stride"] = np.int64(stride)
            g.attrs["in_channels"] = np.int64(cin)
            g.attrs["out_channels"] = np.int64(cout)
            g.attrs["origin"] = "init"
        for p, t in P.items():
            a = t.numpy().astype(np.float32)
            f.create_dataset(p, data=a, chunks=a.shape, fletcher32=True)
        f.create_dataset("lineage", shape=(0,), dtype=h5py.string_dtype("utf-8"), maxshape=(None,))
print("wrote", OUT, "(%d floats)" % offset, "loss %.6f" % loss.item())
