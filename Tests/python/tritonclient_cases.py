#!/usr/bin/env python3
"""Drives a running `mlres-eval serve` with Triton's own HTTP client (tritonclient[http]).

One case per invocation; exit 0 when every check of the case holds, 1 (with the reason on
stderr) otherwise. Run by Tests/MLResServerTests/TritonClientTests.swift, which starts the
server, writes the checkpoints and the `mlres-eval score --save-logits` reference, and passes:

    python3 Tests/python/tritonclient_cases.py CASE --url 127.0.0.1:PORT --model fm \
        [--logits score.npy --images t10k-images-idx3-ubyte] [--deadline S] [--pid PID]

The served logits are compared with the logits `mlres-eval score --save-logits` wrote for the
same checkpoint and images (an independent code path: the evaluator's batched scorer).
Hostile cases use raw sockets or http.client, because tritonclient cannot send broken requests.
"""
import argparse
import gzip
import http.client
import json
import os
import socket
import sys
import time
import zlib

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "model_repository"]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def idx_images(path):
    """The IDX3 file of Fashion-MNIST: magic 2051, count, rows, cols, then uint8 pixels."""
    raw = open(path, "rb").read()
    magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">u4")
    check(magic == 2051, f"{path}: not an IDX3 image file")
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(int(n), 1, int(rows), int(cols))


def raises(fn, status, needle):
    """fn() must raise InferenceServerException with this HTTP status and message fragment."""
    try:
        fn()
    except InferenceServerException as e:
        check(str(e.status()) == str(status), f"expected HTTP {status}, got {e.status()}: {e.message()}")
        check(needle in e.message(), f"expected {needle!r} in the error, got {e.message()!r}")
        return e.message()
    raise Failed(f"expected HTTP {status} ({needle}), the call succeeded")


def raw_post(a, path, body, headers):
    host, port = a.url.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request("POST", path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data) if data else {}


def expect_error(a, body, headers, status, field, needle):
    st, doc = raw_post(a, f"/v2/models/{a.model}/infer", body, headers)
    check(st == status, f"expected HTTP {status}, got {st}: {doc}")
    check(doc.get("field") == field, f"expected field {field!r}, got {doc}")
    check(needle in doc.get("error", ""), f"expected {needle!r} in {doc}")
    return doc


def close_logits(got, want, what):
    check(got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}")
    err = np.max(np.abs(got - want) / np.maximum(1, np.abs(want)))
    check(err <= 1e-4, f"{what}: served logits differ from mlres-eval score --save-logits by {err:g} (relative)")


# ---------------------------------------------------------------- cases with the real client

def case_health(a, c):
    check(c.is_server_live(), "is_server_live")
    check(c.is_server_ready(), "is_server_ready")
    meta = c.get_server_metadata()
    check(meta["name"] == "mlres", f"server name {meta}")
    check(sorted(meta["extensions"]) == sorted(EXTENSIONS), f"extensions {meta['extensions']} != {EXTENSIONS}")


def case_metadata(a, c):
    for version in ("", "1"):
        m = c.get_model_metadata(a.model, model_version=version)
        check(m["name"] == a.model and m["versions"] == ["1"], f"metadata {m}")
        check(m["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}], f"inputs {m['inputs']}")
        check([o["name"] for o in m["outputs"]] == ["logits", "class"], f"outputs {m['outputs']}")
        check(m["outputs"][0]["shape"] == [-1, 10] and m["outputs"][1]["datatype"] == "INT64", f"outputs {m['outputs']}")
    raises(lambda: c.get_model_metadata(a.model, model_version="2"), 404, "no version '2'")
    raises(lambda: c.get_model_metadata("nosuch"), 404, "not loaded")


def case_config(a, c):
    for version in ("", "1"):
        cfg = c.get_model_config(a.model, model_version=version)
        check(cfg["name"] == a.model, f"config {cfg}")
        check(cfg["max_batch_size"] == 64, f"max_batch_size {cfg.get('max_batch_size')}")
        check(cfg["input"] == [{"name": "input", "data_type": "TYPE_FP32", "format": "FORMAT_NCHW", "dims": [1, 28, 28]}],
              f"input {cfg['input']}")
        outs = {o["name"]: o for o in cfg["output"]}
        check(outs["logits"]["data_type"] == "TYPE_FP32" and outs["logits"]["dims"] == [10], f"logits {outs}")
        check(outs["class"]["data_type"] == "TYPE_INT64", f"class {outs}")
    raises(lambda: c.get_model_config(a.model, model_version="3"), 404, "no version '3'")


def infer_all(a, c, binary_in, binary_out, datatype="UINT8", compression=None, version=""):
    images = idx_images(a.images)
    x = images if datatype == "UINT8" else images.astype(np.float32) / 255
    inp = httpclient.InferInput("input", list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=binary_in)
    outs = [httpclient.InferRequestedOutput("logits", binary_data=binary_out),
            httpclient.InferRequestedOutput("class", binary_data=binary_out)]
    r = c.infer(a.model, [inp], outputs=outs, request_compression_algorithm=compression, model_version=version)
    return r, images


def check_reply(a, r, what):
    want = np.load(a.logits)
    logits = r.as_numpy("logits")
    close_logits(logits, want, what)
    check(logits.dtype == np.float32, f"{what}: logits dtype {logits.dtype}")
    cls = r.as_numpy("class")
    check(cls.dtype == np.int64 and cls.tolist() == np.argmax(logits, axis=1).tolist(), f"{what}: class {cls}")


def make_inout(binary_in, binary_out):
    def case(a, c):
        for datatype in ("UINT8", "FP32"):
            r, _ = infer_all(a, c, binary_in, binary_out, datatype)
            outs = r.get_response()["outputs"]
            for o in outs:
                has_binary = "binary_data_size" in o.get("parameters", {})
                check(has_binary == binary_out and ("data" in o) == (not binary_out), f"output encoding {o}")
            check_reply(a, r, f"{datatype} in {'binary' if binary_in else 'JSON'}, out {'binary' if binary_out else 'JSON'}")
    return case


def case_default_outputs(a, c):
    # No outputs named: tritonclient sets binary_data_output, every output comes back in binary.
    images = idx_images(a.images)
    inp = httpclient.InferInput("input", list(images.shape), "UINT8")
    inp.set_data_from_numpy(images)
    r = c.infer(a.model, [inp])
    names = [o["name"] for o in r.get_response()["outputs"]]
    check(names == ["logits", "class"], f"outputs {names}")
    check(all("binary_data_size" in o["parameters"] for o in r.get_response()["outputs"]), "binary by default")
    check_reply(a, r, "default outputs")


def case_classification(a, c):
    images = idx_images(a.images)
    want = np.load(a.logits)
    for binary_out in (True, False):
        inp = httpclient.InferInput("input", list(images.shape), "UINT8")
        inp.set_data_from_numpy(images)
        r = c.infer(a.model, [inp], outputs=[httpclient.InferRequestedOutput("logits", binary_data=binary_out, class_count=3)])
        top = r.as_numpy("logits")
        check(top.shape == (len(images), 3), f"classification shape {top.shape}")
        for n in range(len(images)):
            order = sorted(range(10), key=lambda j: (-want[n, j], j))[:3]
            for k in range(3):
                item = top[n, k]
                text = item.decode() if isinstance(item, bytes) else str(item)
                parts = text.split(":", 2)
                check(len(parts) == 3, f"expected value:index:label, got {text!r}")
                value, index, label = parts
                check(int(index) == order[k], f"image {n} rank {k}: index {index}, want {order[k]} ({text})")
                check(abs(float(value) - want[n, order[k]]) <= 1e-4 * max(1, abs(want[n, order[k]])), f"value {text}")
                check(label == FASHION[order[k]], f"label {label!r} for class {order[k]}")
    inp = httpclient.InferInput("input", list(images.shape), "UINT8")
    inp.set_data_from_numpy(images)
    raises(lambda: c.infer(a.model, [inp], outputs=[httpclient.InferRequestedOutput("logits", class_count=11)]),
           400, "the model has 10")


def case_output_selection(a, c):
    images = idx_images(a.images)
    inp = httpclient.InferInput("input", list(images.shape), "UINT8")
    inp.set_data_from_numpy(images)
    r = c.infer(a.model, [inp], outputs=[httpclient.InferRequestedOutput("class")])
    names = [o["name"] for o in r.get_response()["outputs"]]
    check(names == ["class"], f"asked for class only, got {names}")
    check(r.as_numpy("logits") is None, "logits came back unasked")
    check(r.as_numpy("class").tolist() == np.argmax(np.load(a.logits), axis=1).tolist(), "class values")
    r = c.infer(a.model, [inp], outputs=[httpclient.InferRequestedOutput("class", binary_data=False),
                                         httpclient.InferRequestedOutput("logits")])
    check([o["name"] for o in r.get_response()["outputs"]] == ["class", "logits"], "order of outputs")
    raises(lambda: c.infer(a.model, [inp], outputs=[httpclient.InferRequestedOutput("potato")]), 400, "unknown output 'potato'")
    raises(lambda: c.infer(a.model, [inp], outputs=[httpclient.InferRequestedOutput("class"),
                                                    httpclient.InferRequestedOutput("class")]), 400, "twice")


def case_versions(a, c):
    check(c.is_model_ready(a.model), "is_model_ready")
    check(c.is_model_ready(a.model, model_version="1"), "is_model_ready version 1")
    check(not c.is_model_ready(a.model, model_version="2"), "version 2 must not be ready")
    r, _ = infer_all(a, c, True, True, version="1")
    check(r.get_response()["model_version"] == "1", "model_version")
    check_reply(a, r, "versions/1/infer")
    raises(lambda: infer_all(a, c, True, True, version="2"), 404, "no version '2'")
    # After a reload the served version is 2: version 1 is gone, version 2 serves.
    st, doc = raw_post(a, f"/v2/repository/models/{a.model}/load", b"", {})
    check(st == 200 and doc["version"] == "2", f"reload {st} {doc}")
    check(not c.is_model_ready(a.model, model_version="1"), "version 1 after reload")
    check(c.is_model_ready(a.model, model_version="2"), "version 2 after reload")
    raises(lambda: infer_all(a, c, True, True, version="1"), 404, "no version '1'")
    r, _ = infer_all(a, c, False, False, version="2")
    check_reply(a, r, "versions/2/infer")


def case_compression(a, c):
    for algorithm in ("gzip", "deflate"):
        for binary in (True, False):
            r, _ = infer_all(a, c, binary, binary, compression=algorithm)
            check_reply(a, r, f"{algorithm}, binary={binary}")


def case_readiness(a, c):
    check(c.is_model_ready(a.model), "the good model is ready")
    check(not c.is_model_ready("broken"), "a model whose load failed must not be ready")
    check(not c.is_model_ready("nosuch"), "an unknown model must not be ready")
    host, port = a.url.split(":")
    for path, status in ((f"/v2/models/{a.model}/ready", 200), ("/v2/models/broken/ready", 503),
                         ("/v2/models/nosuch/ready", 404), (f"/v2/models/{a.model}/versions/9/ready", 404)):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", path)
        st = conn.getresponse().status
        check(st == status, f"GET {path}: {st}, want {status}")


# ---------------------------------------------------------------- hostile requests

def binary_request(n, size=None, header_extra=0):
    hdr = json.dumps({"inputs": [{"name": "input", "shape": [n, 1, 28, 28], "datatype": "UINT8",
                                  "parameters": {"binary_data_size": n * 784 if size is None else size}}]}).encode()
    return hdr, {"Inference-Header-Content-Length": str(len(hdr) + header_extra)}


def case_truncated_binary(a, c):
    hdr, h = binary_request(2)
    expect_error(a, hdr + bytes(784 * 2 - 100), h, 400, "inputs[0].parameters.binary_data_size", "only 1468 bytes follow")
    expect_error(a, hdr + bytes(784 * 2 + 7), h, 400, "Inference-Header-Content-Length", "7 bytes after the JSON header")


def case_header_length_too_large(a, c):
    hdr, h = binary_request(1, header_extra=5000)
    expect_error(a, hdr + bytes(784), h, 400, "Inference-Header-Content-Length", "the body has only")
    hdr, h = binary_request(1, header_extra=10)   # the JSON swallows binary bytes
    st, doc = raw_post(a, f"/v2/models/{a.model}/infer", hdr + bytes(784), h)
    check(st == 400, f"header length past the JSON: {st} {doc}")
    hdr, _ = binary_request(1)
    expect_error(a, hdr + bytes(784), {"Inference-Header-Content-Length": "-3"}, 400,
                 "Inference-Header-Content-Length", "not a byte count")
    st, doc = raw_post(a, f"/v2/models/{a.model}/infer", hdr + bytes(784), {})
    check(st == 400 and "Inference-Header-Content-Length" in doc["error"], f"binary without the header: {st} {doc}")


def case_binary_size_mismatch(a, c):
    hdr, h = binary_request(1, size=783)
    expect_error(a, hdr + bytes(783), h, 400, "inputs[0].parameters.binary_data_size", "needs 784")
    hdr = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                  "parameters": {"binary_data_size": 784}}]}).encode()
    expect_error(a, hdr + bytes(784), {"Inference-Header-Content-Length": str(len(hdr))}, 400,
                 "inputs[0].parameters.binary_data_size", "needs 3136")
    nan = np.full((1, 1, 28, 28), 0.5, dtype="<f4")
    nan[0, 0, 3, 4] = np.nan
    hdr = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                  "parameters": {"binary_data_size": 3136}}]}).encode()
    expect_error(a, hdr + nan.tobytes(), {"Inference-Header-Content-Length": str(len(hdr))}, 400,
                 "inputs[0].data", "at index 88")


def case_gzip_bomb(a, c):
    # 64 MiB of zeros compress to about 64 KiB; the server's limit is --max-body-mb 4.
    inner = b'{"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"UINT8","data":[' + b"0," * (32 << 20) + b"0]}]}"
    for name, packed in (("gzip", gzip.compress(inner, 9)), ("deflate", zlib.compress(inner, 9))):
        check(len(packed) < 1 << 20, f"the {name} bomb is {len(packed)} bytes")
        st, doc = raw_post(a, f"/v2/models/{a.model}/infer", packed, {"Content-Encoding": name})
        check(st == 413 and "inflates to more than" in doc.get("error", ""), f"{name} bomb: {st} {doc}")
    st, doc = raw_post(a, f"/v2/models/{a.model}/infer", b"\x1f\x8bnot gzip at all", {"Content-Encoding": "gzip"})
    check(st == 400 and doc.get("field") == "Content-Encoding", f"corrupt gzip: {st} {doc}")
    st, doc = raw_post(a, f"/v2/models/{a.model}/infer", b"{}", {"Content-Encoding": "br"})
    check(st == 415 and doc.get("field") == "Content-Encoding", f"brotli: {st} {doc}")
    check(c.is_server_live(), "still serving after the bombs")


def case_nested_mismatch(a, c):
    img = np.arange(784).reshape(1, 1, 28, 28) % 256
    good = {"name": "input", "shape": [1, 1, 28, 28], "datatype": "UINT8", "data": img.tolist()}
    st, doc = raw_post(a, f"/v2/models/{a.model}/infer", json.dumps({"inputs": [good]}).encode(), {})
    check(st == 200, f"nested as the shape: {st} {doc}")
    hwc = dict(good, data=img.transpose(0, 2, 3, 1).tolist())   # channels last: [1][28][28][1]
    expect_error(a, json.dumps({"inputs": [hwc]}).encode(), {}, 400, "inputs[0].data",
                 "data is nested as [1,28,28,1] but shape is [1,1,28,28]")
    flat = img.reshape(-1).tolist()
    ragged = dict(good, data=[[[flat[:28]] * 27 + [flat[:27]]]])
    expect_error(a, json.dumps({"inputs": [ragged]}).encode(), {}, 400, "inputs[0].data", "ragged")
    two = dict(good, data=[flat[:783], [flat[783]]])
    expect_error(a, json.dumps({"inputs": [two]}).encode(), {}, 400, "inputs[0].data", "nested as [2,783]")


def stall(a):
    """Sends a request head promising 1000 bytes and 10 of them; returns the socket."""
    host, port = a.url.split(":")
    s = socket.create_connection((host, int(port)))
    s.sendall(f"POST /v2/models/{a.model}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
              + b'{"inputs":')
    return s


def read_reply(s, limit):
    s.settimeout(limit)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        raise Failed(f"no answer and no close within {limit} s")
    return data


def case_stalled_upload(a, c):
    t = time.time()
    s = stall(a)
    data = read_reply(s, a.deadline + 5)
    took = time.time() - t
    check(data.startswith(b"HTTP/1.1 408"), f"expected 408, got {data[:80]!r}")
    check(b"request body did not arrive" in data, f"reply {data!r}")
    check(a.deadline - 0.5 <= took <= a.deadline + 3, f"answered after {took:.1f} s, deadline {a.deadline} s")
    # A head that never completes is answered too.
    host, port = a.url.split(":")
    s = socket.create_connection((host, int(port)))
    s.sendall(b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\nContent-Le")
    data = read_reply(s, a.deadline + 5)
    check(data.startswith(b"HTTP/1.1 408") and b"request head did not arrive" in data, f"partial head: {data[:120]!r}")
    check(c.is_server_live(), "still serving")


def case_sigterm_stalled(a, c):
    s = stall(a)
    time.sleep(0.3)
    os.kill(a.pid, 15)
    t = time.time()
    data = read_reply(s, 10)
    took = time.time() - t
    check(took < 5, f"the stalled request was held {took:.1f} s after SIGTERM")
    check(data.startswith(b"HTTP/1.1 503") or data == b"", f"reply {data[:80]!r}")
    host, port = a.url.split(":")
    for _ in range(100):
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return
        time.sleep(0.05)
    raise Failed("the server still accepts connections 5 s after SIGTERM")


CASES = {
    "health": case_health, "metadata": case_metadata, "config": case_config,
    "json-in-json-out": make_inout(False, False), "json-in-binary-out": make_inout(False, True),
    "binary-in-json-out": make_inout(True, False), "binary-in-binary-out": make_inout(True, True),
    "default-outputs": case_default_outputs, "classification": case_classification,
    "output-selection": case_output_selection, "versions": case_versions, "compression": case_compression,
    "readiness": case_readiness, "truncated-binary": case_truncated_binary,
    "header-length-too-large": case_header_length_too_large, "binary-size-mismatch": case_binary_size_mismatch,
    "gzip-bomb": case_gzip_bomb, "nested-mismatch": case_nested_mismatch,
    "stalled-upload": case_stalled_upload, "sigterm-stalled": case_sigterm_stalled,
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=sorted(CASES) + ["list"])
    p.add_argument("--url", default="127.0.0.1:8080")
    p.add_argument("--model", default="fm")
    p.add_argument("--logits")
    p.add_argument("--images")
    p.add_argument("--deadline", type=float, default=30)
    p.add_argument("--pid", type=int)
    a = p.parse_args()
    if a.case == "list":
        print("\n".join(sorted(CASES)))
        return 0
    c = httpclient.InferenceServerClient(a.url, network_timeout=60)
    try:
        CASES[a.case](a, c)
    except Failed as e:
        print(f"{a.case}: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"{a.case}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
