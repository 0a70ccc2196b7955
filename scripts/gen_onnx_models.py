#!/usr/bin/env python3
"""Generates the small ONNX models the tests and demos use (needs the `onnx` and `numpy`
packages of the test venv). Deterministic: the same files every run.

  simple.onnx   Triton's `simple`: INPUT0, INPUT1 INT32 [-1,16] -> OUTPUT0 = sum, OUTPUT1 = difference
  strings.onnx  BYTES: INPUT0 STRING [-1] -> OUTPUT0 = upper-cased (StringNormalizer)
  dense.onnx    dynamic batch FP32: INPUT0 [-1,64] -> OUTPUT0 [-1,32] = relu(x @ W + b), seeded weights
  mlp.onnx      dynamic batch FP32, a transformer-sized feed-forward block (32 MiB of weights):
                INPUT0 [-1,1024] -> OUTPUT0 [-1,1024] = relu(x @ W1 + b1) @ W2 + b2, W1 1024x4096

Usage: gen_onnx_models.py OUTDIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]
# IR 9 (ONNX 1.15): recent onnx packages write newer IR versions than deployed runtimes read.
IR_VERSION = 9


def save(model: onnx.ModelProto, path: str) -> None:
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def simple() -> onnx.ModelProto:
    shape = ["batch", 16]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT32, shape) for n in ("INPUT0", "INPUT1")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.INT32, shape) for n in ("OUTPUT0", "OUTPUT1")]
    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
    ]
    graph = helper.make_graph(nodes, "simple", inputs, outputs)
    return helper.make_model(graph, opset_imports=OPSET, producer_name="maas-gen")


def strings() -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("INPUT0", TensorProto.STRING, ["n"])]
    outputs = [helper.make_tensor_value_info("OUTPUT0", TensorProto.STRING, ["n"])]
    node = helper.make_node("StringNormalizer", ["INPUT0"], ["OUTPUT0"], case_change_action="UPPER", locale="C")
    graph = helper.make_graph([node], "strings", inputs, outputs)
    return helper.make_model(graph, opset_imports=OPSET, producer_name="maas-gen")


def dense() -> onnx.ModelProto:
    rng = np.random.default_rng(20261123)
    w = rng.standard_normal((64, 32)).astype(np.float32) * 0.1
    b = rng.standard_normal((32,)).astype(np.float32) * 0.1
    inputs = [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", 64])]
    outputs = [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 32])]
    nodes = [
        helper.make_node("MatMul", ["INPUT0", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "B"], ["xwb"]),
        helper.make_node("Relu", ["xwb"], ["OUTPUT0"]),
    ]
    init = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    graph = helper.make_graph(nodes, "dense", inputs, outputs, initializer=init)
    return helper.make_model(graph, opset_imports=OPSET, producer_name="maas-gen")


def mlp() -> onnx.ModelProto:
    """At batch 1 a run reads all 32 MiB of weights for 8 MFLOP (memory-bound); at batch 32
    the same read serves 32 rows: the kind of model dynamic batching exists for."""
    rng = np.random.default_rng(20261202)
    d, h = 1024, 4096
    w1 = (rng.standard_normal((d, h)) / np.sqrt(d)).astype(np.float32)
    b1 = (rng.standard_normal((h,)) * 0.01).astype(np.float32)
    w2 = (rng.standard_normal((h, d)) / np.sqrt(h)).astype(np.float32)
    b2 = (rng.standard_normal((d,)) * 0.01).astype(np.float32)
    inputs = [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", d])]
    outputs = [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", d])]
    nodes = [
        helper.make_node("MatMul", ["INPUT0", "W1"], ["h0"]),
        helper.make_node("Add", ["h0", "B1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "W2"], ["o0"]),
        helper.make_node("Add", ["o0", "B2"], ["OUTPUT0"]),
    ]
    init = [numpy_helper.from_array(a, n) for a, n in ((w1, "W1"), (b1, "B1"), (w2, "W2"), (b2, "B2"))]
    graph = helper.make_graph(nodes, "mlp", inputs, outputs, initializer=init)
    return helper.make_model(graph, opset_imports=OPSET, producer_name="maas-gen")


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    for name, build in (("simple", simple), ("strings", strings), ("dense", dense), ("mlp", mlp)):
        path = os.path.join(out, f"{name}.onnx")
        save(build(), path)
        print(path)


if __name__ == "__main__":
    main()
