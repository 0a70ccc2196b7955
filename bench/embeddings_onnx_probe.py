"""A probe for the next embeddings engine: all-MiniLM-L6-v2 on ONNX Runtime, in-process.

Builds the BERT encoder (embeddings, 6 layers, mean pooling, L2 normalisation) as an ONNX
graph straight from the sentence-transformers folder's `model.safetensors` — no torch, no
export, the way a loader in the server could do it for an uploaded folder — and times
`InferenceSession.run` on 256 texts of 11-29 tokens (9-27 plus CLS/SEP, as
bench/embeddings.py), sorted by length and padded per batch of 32, 2 intra-op threads.
With the `tokenizers` package importable and `--reference` given, it also checks the
vectors against the committed sentence-transformers reference
(crates/maas-runtime/tests/data/minilm_reference.json).

    python bench/embeddings_onnx_probe.py MODEL_DIR [--reference FILE] [--threads 2]

Measured 2026-12-02 (2 vCPU AMD EPYC): lowest cosine 0.9999999; 272 sentences/s (median of
5 rounds, 234-342) alone, and 212 (191-286) right after `bench/embeddings.sh` measured the candle
backend at 208 in-process (158-245) on the same, busier machine. No clear gain over candle, so
the backend stays on candle (bench/README.md).
"""

import argparse
import json
import struct
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh


def load_safetensors(path: str) -> dict[str, np.ndarray]:
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header, base = json.loads(raw[8 : 8 + n]), 8 + n
    out = {}
    for name, v in header.items():
        if name == "__metadata__" or v["dtype"] != "F32":
            continue
        a, b = v["data_offsets"]
        out[name] = np.frombuffer(raw[base + a : base + b], dtype=np.float32).reshape(v["shape"])
    return out


def build(model_dir: str) -> onnx.ModelProto:
    cfg = json.load(open(f"{model_dir}/config.json"))
    W = load_safetensors(f"{model_dir}/model.safetensors")
    pre = "bert." if any(k.startswith("bert.") for k in W) else ""
    hidden, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    inits, nodes, count = [], [], [0]

    def const(name, arr):
        inits.append(nh.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op, inputs, **attrs):
        count[0] += 1
        out = f"t{count[0]}"
        nodes.append(h.make_node(op, inputs, [out], **attrs))
        return out

    def w(name):
        return const(name, W[pre + name])

    def norm(x, p):
        return node("LayerNormalization", [x, w(p + ".weight"), w(p + ".bias")], axis=-1, epsilon=eps)

    def linear(x, p):
        return node("Add", [node("MatMul", [x, const(p + ".wT", W[pre + p + ".weight"].T)]), w(p + ".bias")])

    seq = node("Slice", [node("Shape", ["input_ids"]), const("one", np.array([1])), const("two", np.array([2]))])
    positions = node("Slice", [w("embeddings.position_embeddings.weight"), const("zero", np.array([0])), seq,
                               const("axis0", np.array([0]))])
    token_type = node("Gather", [w("embeddings.token_type_embeddings.weight"), const("type0", np.array(0))])
    x = node("Add", [node("Add", [node("Gather", [w("embeddings.word_embeddings.weight"), "input_ids"]), positions]),
                     token_type])
    x = norm(x, "embeddings.LayerNorm")
    mask = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [const("onef", np.array(1.0, np.float32)), mask]),
                        const("neg", np.array(-1e4, np.float32))])
    bias = node("Unsqueeze", [bias, const("axes12", np.array([1, 2]))])
    split = const("split", np.array([0, 0, heads, hidden // heads]))
    merge = const("merge", np.array([0, 0, hidden]))
    scale = const("scale", np.array(np.sqrt(hidden // heads), np.float32))
    for layer in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."

        def per_head(t):
            return node("Transpose", [node("Reshape", [t, split])], perm=[0, 2, 1, 3])

        q, k, v = (per_head(linear(x, p + "attention.self." + n)) for n in ("query", "key", "value"))
        scores = node("MatMul", [q, node("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = node("Add", [node("Div", [scores, scale]), bias])
        context = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        context = node("Reshape", [node("Transpose", [context], perm=[0, 2, 1, 3]), merge])
        x = norm(node("Add", [linear(context, p + "attention.output.dense"), x]), p + "attention.output.LayerNorm")
        i = linear(x, p + "intermediate.dense")  # exact GELU: x * (1 + erf(x / sqrt 2)) / 2
        erf = node("Erf", [node("Div", [i, const(f"sqrt2_{layer}", np.array(np.sqrt(2), np.float32))])])
        gelu = node("Mul", [node("Mul", [i, node("Add", [erf, const(f"one_{layer}", np.array(1, np.float32))])]),
                            const(f"half_{layer}", np.array(0.5, np.float32))])
        x = norm(node("Add", [linear(gelu, p + "output.dense"), x]), p + "output.LayerNorm")
    mask3 = node("Unsqueeze", [mask, const("axis2", np.array([2]))])
    total = node("ReduceSum", [node("Mul", [x, mask3]), const("axis1", np.array([1]))], keepdims=0)
    tokens = node("ReduceSum", [mask3, const("axis1b", np.array([1]))], keepdims=0)
    mean = node("Div", [total, node("Max", [tokens, const("tiny", np.array(1e-9, np.float32))])])
    nodes.append(h.make_node("LpNormalization", [mean], ["embedding"], axis=-1, p=2))
    graph = h.make_graph(
        nodes, "minilm",
        [h.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "attention_mask")],
        [h.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--reference", help="sentence-transformers reference vectors (needs `tokenizers`)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    with tempfile.NamedTemporaryFile(suffix=".onnx") as f:
        onnx.save(build(args.model_dir), f.name)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(f.name, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2026)
    lengths = np.sort(rng.integers(11, 30, 256))
    batches = []
    for i in range(0, 256, 32):
        n = lengths[i : i + 32]
        mask = (np.arange(n.max())[None] < n[:, None]).astype(np.int64)
        batches.append((rng.integers(1000, 30000, mask.shape).astype(np.int64) * mask, mask))

    def one_round() -> float:
        start = time.perf_counter()
        for ids, mask in batches:
            session.run(None, {"input_ids": ids, "attention_mask": mask})
        return 256 / (time.perf_counter() - start)

    one_round()
    rates = [one_round() for _ in range(args.rounds)]
    print(f"onnxruntime {ort.__version__}, {args.threads} threads: sentences/s per round",
          " ".join(f"{r:.0f}" for r in rates), f"(median {np.median(rates):.0f})")
    if args.reference:
        from tokenizers import Tokenizer

        ref = json.load(open(args.reference))
        tok = Tokenizer.from_file(f"{args.model_dir}/tokenizer.json")
        tok.no_padding()
        tok.enable_truncation(ref["max_seq_length"])
        worst = 1.0
        for text, want in zip(ref["sentences"], ref["embeddings"]):
            ids = np.array([tok.encode(text).ids], np.int64)
            got = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
            want = np.array(want, np.float32)
            worst = min(worst, float(got @ want / np.linalg.norm(got) / np.linalg.norm(want)))
        print(f"lowest cosine against sentence-transformers over {len(ref['sentences'])} texts: {worst:.7f}")


if __name__ == "__main__":
    main()
