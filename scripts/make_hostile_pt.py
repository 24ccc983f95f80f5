#!/usr/bin/env python3
"""Writes a .pt-shaped zip whose data.pkl, if unpickled with pickle.load, would run
`os.system("touch MARKER")` — the classic malicious checkpoint. The interop tests check that
scripts/pt_to_safetensors.py refuses it (naming the global) and that MARKER never appears.

    python3 scripts/make_hostile_pt.py OUT.pt MARKER        (no PyTorch needed; nothing is run)
"""
import os
import pickle
import sys
import zipfile


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


out, marker = sys.argv[1], sys.argv[2]
data = pickle.dumps({"stem.conv.weight": Payload(marker)}, protocol=2)
with zipfile.ZipFile(out, "w") as z:
    z.writestr("archive/data.pkl", data)
    z.writestr("archive/byteorder", "little")
    z.writestr("archive/version", "3\n")
print(f"wrote {out}")
