#!/usr/bin/env python3
"""The paper's network in PyTorch, loaded from an mlres safetensors export.

Multi-level residual network (Chang et al., ICLR 2018) exactly as mlres checkpoints define it
(docs/checkpoint-format.md): pre-activation blocks, each a forward-Euler step with its own h,

    Y_{j+1} = P(Y_j) + h_j * F(Y_j),   F(Y) = conv2(relu(bn2(conv1(relu(bn1(Y))))))

P the identity, or for the first block of a later stage the parameter-free shortcut
Y[:, :, ::2, ::2] zero-padded from Cin to Cout channels, (Cout - Cin)//2 zero channels before the
input channels and the rest after. Stem: 3x3 conv, no bias. Head: relu(bn) -> global average
pool -> linear. The module's attribute names are the state_dict names of
`mlres-surgery export --format safetensors`, so

    net = load_mlres("model.safetensors")      # an nn.Module in eval mode, strict load
    logits = net(pixels)                       # pixels in [0, 1], [N, C, H, W]

`MLResNet.forward` standardises its input with the checkpoint's input_mean/input_std (kept as
buffers), like `mlres-eval score` and the ONNX export. `forward_numpy` is the same math in
float64 NumPy, for machines without PyTorch (the CI checks exported files with it).

Needs: torch (for the module), safetensors, numpy.
"""
import json
import sys

import numpy as np


def read_metadata(path):
    """The __metadata__ of a safetensors file, JSON values decoded."""
    from safetensors import safe_open
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def load_state(path):
    """(tensors as float64/int64 numpy arrays by state_dict name, decoded metadata)."""
    from safetensors.numpy import load_file
    return load_file(path), read_metadata(path)


# ---------------------------------------------------------------------------------------------
# PyTorch module

def _torch():
    import torch
    return torch


def build_module(stage_widths, h, in_channels, num_classes, input_mean=None, input_std=None, bn_epsilon=1e-5):
    """The network as a torch.nn.Module with the given architecture and step sizes h[stage][block]."""
    torch = _torch()
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        """Y + h * F(Y): pre-activation, zero-pad shortcut."""

        def __init__(self, cin, cout, stride, h):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(cin, eps=bn_epsilon)
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout, eps=bn_epsilon)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.stride, self.cin, self.cout, self.h = stride, cin, cout, float(h)

        def forward(self, y):
            f = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(y))))))
            p = y[:, :, ::self.stride, ::self.stride]
            pad = self.cout - self.cin
            if pad:
                p = F.pad(p, (0, 0, 0, 0, pad // 2, pad - pad // 2))
            return p + self.h * f

    class Stage(nn.Module):
        def __init__(self, blocks):
            super().__init__()
            self.blocks = nn.ModuleList(blocks)

    class Stem(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)

    class Head(nn.Module):
        def __init__(self, c, k):
            super().__init__()
            self.bn = nn.BatchNorm2d(c, eps=bn_epsilon)
            self.fc = nn.Linear(c, k)

    class MLResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = Stem(in_channels, stage_widths[0])
            stages, cin = [], stage_widths[0]
            for s, (w, hs) in enumerate(zip(stage_widths, h)):
                blocks = []
                for b, hb in enumerate(hs):
                    blocks.append(Block(cin, w, 2 if (b == 0 and s > 0) else 1, hb))
                    cin = w
                stages.append(Stage(blocks))
            self.stages = nn.ModuleList(stages)
            self.head = Head(cin, num_classes)
            mean = input_mean if input_mean is not None else [0.0] * in_channels
            std = input_std if input_std is not None else [1.0] * in_channels
            # Not parameters: kept out of the state_dict (persistent=False) like mlres keeps them
            # in the metadata.
            self.register_buffer("input_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("input_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

        def forward(self, pixels):
            """pixels in [0, 1], [N, C, H, W] -> logits [N, K]."""
            y = self.stem.conv((pixels - self.input_mean) / self.input_std)
            for st in self.stages:
                for blk in st.blocks:
                    y = blk(y)
            return self.head.fc(F.relu(self.head.bn(y)).mean((2, 3)))

    return MLResNet()


def load_mlres(path, dtype=None):
    """The network of an mlres safetensors export as an nn.Module in eval mode (strict load)."""
    torch = _torch()
    from safetensors.torch import load_file
    meta = read_metadata(path)
    net = build_module(meta["stage_widths"], meta["h"], meta["input_shape"][0], meta["num_classes"],
                       meta.get("input_mean"), meta.get("input_std"), meta.get("bn_epsilon", 1e-5))
    net.load_state_dict(load_file(path), strict=True)
    if dtype is not None:
        net = net.to(dtype)
    return net.eval()


def save_mlres(net, path, stage_widths, h, input_shape, num_classes, input_mean=None, input_std=None,
               bn_epsilon=1e-5, class_names=None):
    """Writes a module of build_module() as a safetensors file that `mlres-surgery import` reads
    without flags: the state_dict (float32) and the architecture in __metadata__."""
    from safetensors.torch import save_file
    torch = _torch()
    c = input_shape[0]
    meta = {"format": "pt", "mlres_format": "mlres.state_dict.v1",
            "architecture": "preact-resnet", "shortcut": "zero-pad",
            "stage_blocks": json.dumps([len(hs) for hs in h]), "stage_widths": json.dumps(list(stage_widths)),
            "input_shape": json.dumps(list(input_shape)), "num_classes": json.dumps(num_classes),
            "h": json.dumps([[float(x) for x in hs] for hs in h]),
            "input_mean": json.dumps(list(input_mean) if input_mean is not None else [0.0] * c),
            "input_std": json.dumps(list(input_std) if input_std is not None else [1.0] * c),
            "bn_epsilon": json.dumps(bn_epsilon)}
    if class_names is not None:
        meta["class_names"] = json.dumps(list(class_names))
    sd = {k: (v.to(torch.float32) if v.is_floating_point() else v).contiguous() for k, v in net.state_dict().items()}
    save_file(sd, path, metadata=meta)


# ---------------------------------------------------------------------------------------------
# The same forward pass in float64 NumPy (no PyTorch)

def _conv3x3(x, w, stride):
    """x [N, Cin, H, W], w [Cout, Cin, 3, 3], padding 1 -> [N, Cout, Ho, Wo] (cross-correlation)."""
    n, c, hh, ww = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ho, wo = (hh - 1) // stride + 1, (ww - 1) // stride + 1
    out = np.zeros((n, w.shape[0], ho, wo))
    for i in range(3):
        for j in range(3):
            patch = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j], optimize=True)
    return out


def _bn(x, sd, prefix, eps):
    g, b = sd[prefix + ".weight"], sd[prefix + ".bias"]
    m, v = sd[prefix + ".running_mean"], sd[prefix + ".running_var"]
    s = g / np.sqrt(v + eps)
    return x * s[None, :, None, None] + (b - m * s)[None, :, None, None]


def forward_numpy(state, meta, pixels):
    """Logits [N, K] in float64 of the network (state_dict `state`, decoded metadata `meta`) on
    pixels in [0, 1], [N, C, H, W]."""
    sd = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
    eps = float(meta.get("bn_epsilon", 1e-5))
    c = meta["input_shape"][0]
    mean = np.asarray(meta.get("input_mean", [0.0] * c), dtype=np.float64)
    std = np.asarray(meta.get("input_std", [1.0] * c), dtype=np.float64)
    y = (np.asarray(pixels, dtype=np.float64) - mean[None, :, None, None]) / std[None, :, None, None]
    y = _conv3x3(y, sd["stem.conv.weight"], 1)
    for s, hs in enumerate(meta["h"]):
        for b, h in enumerate(hs):
            p = f"stages.{s}.blocks.{b}"
            w1 = sd[p + ".conv1.weight"]
            cout, cin = w1.shape[0], w1.shape[1]
            stride = 2 if (b == 0 and s > 0) else 1
            f = _conv3x3(np.maximum(_bn(y, sd, p + ".bn1", eps), 0), w1, stride)
            f = _conv3x3(np.maximum(_bn(f, sd, p + ".bn2", eps), 0), sd[p + ".conv2.weight"], 1)
            sc = y[:, :, ::stride, ::stride]
            if cout != cin:
                before = (cout - cin) // 2
                sc = np.pad(sc, ((0, 0), (before, cout - cin - before), (0, 0), (0, 0)))
            y = sc + float(h) * f
    y = np.maximum(_bn(y, sd, "head.bn", eps), 0).mean(axis=(2, 3))
    return y @ sd["head.fc.weight"].T + sd["head.fc.bias"]


if __name__ == "__main__":
    # python3 scripts/mlres_torch.py model.safetensors : prints the architecture and checks a strict load.
    meta = read_metadata(sys.argv[1])
    print({k: meta[k] for k in ("stage_blocks", "stage_widths", "input_shape", "num_classes", "h") if k in meta})
    try:
        net = load_mlres(sys.argv[1])
        print(f"loaded into PyTorch (strict): {sum(p.numel() for p in net.parameters())} parameters")
    except ImportError:
        print("PyTorch is not installed: use forward_numpy(*load_state(path), pixels)")
