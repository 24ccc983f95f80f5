#!/usr/bin/env python3
"""Compare two logits files (.npy, N x K): prints one JSON object with the largest absolute
difference, the largest |logit| of the reference (the first file), their ratio and how many
argmax classes agree.   python3 scripts/compare_logits.py REFERENCE.npy OTHER.npy"""
import json
import sys

import numpy as np

ref, other = (np.load(p).astype(np.float64) for p in sys.argv[1:3])
if ref.shape != other.shape:
    print(json.dumps({"error": f"shapes {list(ref.shape)} and {list(other.shape)} differ"}))
    sys.exit(0)
d = np.abs(ref - other)
print(json.dumps({"images": int(ref.shape[0]), "max_abs_diff": float(d.max()), "max_abs_logit": float(np.abs(ref).max()),
                  "rel_diff": float(d.max() / max(np.abs(ref).max(), 1e-30)),
                  "class_agree": int((ref.argmax(1) == other.argmax(1)).sum())}))
