#!/usr/bin/env python3
"""Convert a PyTorch .pt state_dict to safetensors WITHOUT PyTorch, safely.

    python3 scripts/pt_to_safetensors.py model.pt -o model.safetensors [--key state_dict] [--strip-prefix module.]

A .pt written by torch.save (zip format, PyTorch >= 1.6) is a zip holding `<name>/data.pkl` (a
pickle of the object), `<name>/data/<key>` (raw little-endian storages) and `<name>/byteorder`.
Unpickling it with `pickle.load` can run arbitrary code, so this reads the pickle with a
restricted unpickler: the only globals it will resolve are

    collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter,
    torch.<Dtype>Storage (Float, Double, Half, BFloat16, Long, Int, Short, Char, Byte, Bool),
    torch.{float32,...} dtypes

and every other global (os.system, builtins.eval, any class) is refused with an error naming it.
Storages are read from the zip with bounds checks; tensors are rebuilt from (offset, size,
stride) only when they lie inside their storage. The result, a flat dict of name -> array,
is written with the safetensors package's NumPy writer (`safetensors.numpy.save_file`).
Non-tensor values (e.g. a training epoch next to the state_dict) are refused unless --key
selects the state_dict inside a larger dict.

Needs: numpy, safetensors (no torch). Exit status: 0 written, 2 refused or unreadable input.
"""
import argparse
import collections
import io
import os
import pickle
import sys
import tempfile
import zipfile

import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "BFloat16Storage": "bfloat16",
}
TORCH_DTYPES = {"float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
                "float16": np.float16, "half": np.float16, "int64": np.int64, "long": np.int64,
                "int32": np.int32, "int": np.int32, "int16": np.int16, "int8": np.int8,
                "uint8": np.uint8, "bool": np.bool_, "bfloat16": "bfloat16"}


class Refused(Exception):
    pass


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name] if name in STORAGE_DTYPES else TORCH_DTYPES[name]


class _Tensor:
    """A tensor rebuilt from a storage: numpy array (bfloat16 kept as raw uint16 + a flag)."""

    def __init__(self, array, bfloat16=False):
        self.array, self.bfloat16 = array, bfloat16


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    array, bf16 = storage
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or storage_offset < 0:
        raise Refused(f"tensor with size {size}, stride {stride}, offset {storage_offset} is malformed")
    if all(s > 0 for s in size):
        last = storage_offset + sum((n - 1) * st for n, st in zip(size, stride))
        if last >= array.size:
            raise Refused(f"tensor with size {size}, stride {stride}, offset {storage_offset} "
                          f"reaches element {last} of a storage of {array.size}")
    item = array.itemsize
    view = np.lib.stride_tricks.as_strided(array[storage_offset:] if array.size else array, shape=size,
                                           strides=tuple(st * item for st in stride), writeable=False)
    return _Tensor(np.array(view, order="C", copy=True), bf16)  # (ascontiguousarray would make a 0-d tensor 1-d)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _Tensor):
        raise Refused("torch._utils._rebuild_parameter applied to a non-tensor")
    return data


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of ALLOWED, torch storage types and torch dtypes."""

    def __init__(self, fileobj, archive, prefix):
        super().__init__(fileobj)
        self.archive, self.prefix, self.loaded = archive, prefix, {}

    def find_class(self, module, name):
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        if module == "torch" and (name in STORAGE_DTYPES or name in TORCH_DTYPES):
            return _StorageType(name)
        raise Refused(f"the pickle refers to the global {module}.{name}, which is not a tensor or a plain "
                      f"container: refusing to load it (it could run code)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise Refused(f"unexpected persistent id {pid!r}")
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _StorageType):
            raise Refused(f"storage type {stype!r} is not a torch storage type")
        key = str(key)
        if key in self.loaded:
            return self.loaded[key]
        entry = f"{self.prefix}data/{key}"
        try:
            info = self.archive.getinfo(entry)
        except KeyError:
            raise Refused(f"storage {key} is missing from the archive ({entry})")
        bf16 = stype.dtype == "bfloat16"
        dtype = np.dtype(np.uint16 if bf16 else stype.dtype).newbyteorder("<")
        if info.file_size % dtype.itemsize != 0:
            raise Refused(f"storage {key}: {info.file_size} bytes is not a whole number of {dtype} elements")
        raw = self.archive.read(entry)
        arr = np.frombuffer(raw, dtype=dtype)
        if isinstance(numel, int) and numel > arr.size:
            raise Refused(f"storage {key} declares {numel} elements but holds {arr.size}")
        self.loaded[key] = (arr, bf16)
        return self.loaded[key]


def load_pt(path):
    """The object of a zip-format .pt file, tensors as _Tensor, through the restricted unpickler."""
    if not zipfile.is_zipfile(path):
        raise Refused("not a zip-format .pt file (torch.save of PyTorch >= 1.6); legacy pickles are not read")
    with zipfile.ZipFile(path) as z:
        pkls = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise Refused(f"expected one <name>/data.pkl in the archive, found {pkls or 'none'}")
        prefix = pkls[0][: -len("data.pkl")]
        order = z.read(prefix + "byteorder").decode().strip() if (prefix + "byteorder") in z.namelist() else "little"
        if order != "little":
            raise Refused(f"byte order {order!r} is not supported")
        return RestrictedUnpickler(io.BytesIO(z.read(pkls[0])), z, prefix).load()


def flatten(obj, key=None, strip_prefix=None):
    """The state_dict as {name: numpy array}; anything but tensors refused by name."""
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise Refused(f"--key {key}: the file's object has no such entry")
        obj = obj[key]
    if not isinstance(obj, dict):
        raise Refused(f"the file holds a {type(obj).__name__}, expected a state_dict (a dict of tensors)")
    out = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            raise Refused(f"state_dict key {name!r} is not a string")
        if not isinstance(value, _Tensor):
            raise Refused(f"{name}: a {type(value).__name__}, not a tensor (use --key to select the state_dict)")
        if strip_prefix and name.startswith(strip_prefix):
            name = name[len(strip_prefix):]
        if name in out:
            raise Refused(f"{name}: appears twice after --strip-prefix")
        if value.bfloat16:
            # Exact widening bfloat16 -> float32: the 16 bits are the top half of a float32.
            value = _Tensor((value.array.astype(np.uint32) << 16).view(np.float32))
        out[name] = value.array
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pt")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--key", help="entry of a dict holding the state_dict (e.g. state_dict)")
    ap.add_argument("--strip-prefix", help="remove this prefix from every name (e.g. module.)")
    ap.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    a = ap.parse_args(argv)
    from safetensors.numpy import save_file
    try:
        if os.path.exists(a.output) and not a.force:
            raise Refused(f"{a.output} already exists (use --force to replace it)")
        tensors = flatten(load_pt(a.pt), a.key, a.strip_prefix)
        # Atomic publish: a temporary file in the destination folder, then rename.
        d = os.path.dirname(os.path.abspath(a.output))
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(a.output) + ".tmp-", dir=d)
        os.close(fd)
        try:
            save_file(tensors, tmp)
            os.replace(tmp, a.output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except (Refused, pickle.UnpicklingError, zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        print(f"error: {a.pt}: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.output}: {len(tensors)} tensors, {sum(t.size for t in tensors.values())} values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
