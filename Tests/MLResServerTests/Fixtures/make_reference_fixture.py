#!/usr/bin/env python3
"""Writes reference_forward.json: a small pre-activation ResNet with random parameters and
running statistics, UINT8 input images, and the eval-mode logits computed here in float64 with
numpy, independently of the Swift code. Rerun: python3 make_reference_fixture.py

Network (checkpoint format v1): stem 3x3 conv pad 1; blocks Y + h*F(Y),
F = conv2(relu(bn2(conv1(relu(bn1(Y)))))); shape-changing blocks use the zero-pad shortcut
(Y[:, :, ::2, ::2], input channels placed at offset (Cout-Cin)//2); head relu(bn) -> global
average pool -> fc. Inputs: uint8 / 255, then (x - mean_c) / std_c.
"""
import json
import numpy as np

rng = np.random.default_rng(20181)
C, H, W = 3, 5, 5          # odd size: stride 2 gives ceil(5/2) = 3
blocks = [1, 2]
widths = [2, 4]
K = 3
hs = [[0.5], [1.0, 0.25]]
eps = 1e-5

tensors = {}
def f32(a):
    return np.asarray(a, dtype=np.float32)

def put(path, a):
    tensors[path] = f32(a)
    return tensors[path].astype(np.float64)

def bn(prefix, c):
    return dict(
        weight=put(prefix + "/weight", rng.uniform(0.5, 1.5, c)),
        bias=put(prefix + "/bias", rng.normal(0, 0.2, c)),
        running_mean=put(prefix + "/running_mean", rng.normal(0, 0.3, c)),
        running_var=put(prefix + "/running_var", rng.uniform(0.5, 2.0, c)),
    )

def conv_w(path, cout, cin):
    return put(path, rng.normal(0, np.sqrt(2.0 / (cin * 9)), (cout, cin, 3, 3)))

def bn_eval(x, p):
    s = p["weight"] / np.sqrt(p["running_var"] + eps)
    return (x - p["running_mean"][:, None, None]) * s[:, None, None] + p["bias"][:, None, None]

def conv(x, w, stride):
    cin, h, wd = x.shape
    xp = np.zeros((cin, h + 2, wd + 2))
    xp[:, 1:-1, 1:-1] = x
    oh, ow = (h - 1) // stride + 1, (wd - 1) // stride + 1
    out = np.zeros((w.shape[0], oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride:i * stride + 3, j * stride:j * stride + 3]
            out[:, i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2]))
    return out

relu = lambda x: np.maximum(x, 0)

stem = conv_w("model/stem/conv/weight", widths[0], C)
net_blocks = []
for s, nb in enumerate(blocks):
    for b in range(nb):
        cout = widths[s]
        cin = widths[s - 1] if (b == 0 and s > 0) else cout
        stride = 2 if (b == 0 and s > 0) else 1
        pre = f"model/stages/{s}/blocks/{b}"
        net_blocks.append(dict(
            h=hs[s][b], stride=stride, cin=cin, cout=cout,
            bn1=bn(pre + "/bn1", cin), conv1=conv_w(pre + "/conv1/weight", cout, cin),
            bn2=bn(pre + "/bn2", cout), conv2=conv_w(pre + "/conv2/weight", cout, cout)))
head = bn("model/head/bn", widths[-1])
fcw = put("model/head/fc/weight", rng.uniform(-0.5, 0.5, (K, widths[-1])))
fcb = put("model/head/fc/bias", rng.uniform(-0.5, 0.5, K))
mean = f32(rng.uniform(0.3, 0.6, C))
std = f32(rng.uniform(0.2, 0.3, C))

def forward(img_u8):
    x = img_u8.astype(np.float64) / 255.0
    x = (x - mean.astype(np.float64)[:, None, None]) / std.astype(np.float64)[:, None, None]
    y = conv(x, stem, 1)
    for blk in net_blocks:
        f = conv(relu(bn_eval(conv(relu(bn_eval(y, blk["bn1"])), blk["conv1"], blk["stride"]), blk["bn2"])),
                 blk["conv2"], 1)
        if blk["stride"] != 1 or blk["cin"] != blk["cout"]:
            sub = y[:, ::blk["stride"], ::blk["stride"]]
            p = np.zeros((blk["cout"],) + sub.shape[1:])
            off = (blk["cout"] - blk["cin"]) // 2
            p[off:off + blk["cin"]] = sub
        else:
            p = y
        y = p + blk["h"] * f
    pooled = relu(bn_eval(y, head)).mean(axis=(1, 2))
    return fcw @ pooled + fcb

N = 2
images = rng.integers(0, 256, (N, C, H, W))
logits = np.stack([forward(images[n]) for n in range(N)])

fixture = dict(
    input_shape=[C, H, W], num_classes=K, blocks=blocks, widths=widths, h=hs,
    input_mean=[float(v) for v in mean], input_std=[float(v) for v in std],
    tensors={k: dict(shape=list(v.shape), data=[float(x) for x in v.ravel()]) for k, v in tensors.items()},
    count=N, uint8=[int(v) for v in images.ravel()],
    logits=[float(v) for v in logits.ravel()],
)
with open(__file__.replace("make_reference_fixture.py", "reference_forward.json"), "w") as f:
    json.dump(fixture, f, indent=None)
print("logits", logits)
