#!/usr/bin/env python3
"""Builds a Hugging Face-layout model folder from a llama-architecture GGUF file.

The test fixture for the safetensors (candle) path: no registry ships a trained causal LM as
safetensors, so this turns the SmolLM2 GGUF into one. Every tensor is dequantised to F32 with
the `gguf` package (the same numbers llama.cpp computes with), renamed to the Hugging Face names,
and llama.cpp's Q/K row permutation is undone. Writes, into OUT_DIR:

  model.safetensors        F32 weights (the format is written here with numpy + json)
  config.json              LlamaForCausalLM, from the GGUF metadata
  tokenizer.json           byte-level BPE (tokenizer.ggml.* -> the `tokenizers` JSON format)
  tokenizer_config.json    chat template, bos/eos tokens
  generation_config.json   bos/eos ids

Usage: gguf_to_safetensors.py GGUF OUT_DIR
The folder appears complete or not at all (built beside it, then renamed into place).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

# GGUF token types (llama.cpp's llama_token_type).
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# Per-layer tensor names: GGUF suffix -> Hugging Face suffix (under model.layers.N.).
LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}

# The pre-tokenizers llama.cpp names in tokenizer.ggml.pre, as `tokenizers` JSON. SmolLM2
# ("smollm") splits digits one by one before the GPT-2 regex.
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
PRE_TOKENIZERS = {
    "default": BYTE_LEVEL,
    "gpt2": BYTE_LEVEL,
    "smollm": {
        "type": "Sequence",
        "pretokenizers": [{"type": "Digits", "individual_digits": True}, BYTE_LEVEL],
    },
}


class Gguf:
    """The metadata and tensors of one GGUF file."""

    def __init__(self, path: Path):
        self.reader = GGUFReader(path)
        self.arch = self.get("general.architecture")
        if self.arch != "llama":
            sys.exit(f"unsupported architecture {self.arch!r}: only llama GGUFs are converted")

    def get(self, key: str, default=None):
        field = self.reader.fields.get(key)
        return default if field is None else field.contents()

    def arch_get(self, key: str, default=None):
        return self.get(f"{self.arch}.{key}", default)


def hf_name(gguf_name: str) -> str:
    """The Hugging Face name of a GGUF tensor (`blk.3.attn_q.weight` -> `model.layers.3.self_attn.q_proj.weight`)."""
    base, suffix = gguf_name.rsplit(".", 1)
    if m := re.fullmatch(r"blk\.(\d+)\.(\w+)", base):
        if m.group(2) not in LAYER_NAMES:
            sys.exit(f"unknown tensor {gguf_name}")
        return f"model.layers.{m.group(1)}.{LAYER_NAMES[m.group(2)]}.{suffix}"
    if base not in GLOBAL_NAMES:
        sys.exit(f"unknown tensor {gguf_name}")
    return f"{GLOBAL_NAMES[base]}.{suffix}"


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverts convert_hf_to_gguf.py's `permute` of q_proj/k_proj rows (interleaved RoPE halves)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tensor_shape(tensor) -> tuple[int, ...]:
    """The numpy (row-major, Hugging Face) shape: GGUF lists dimensions innermost first."""
    return tuple(int(d) for d in reversed(tensor.shape))


def load_tensor(gguf: Gguf, tensor) -> np.ndarray:
    """One tensor dequantised to F32, with Q/K rows back in Hugging Face order."""
    if tensor.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        data = np.asarray(tensor.data).astype(np.float32)
    else:
        data = dequantize(tensor.data, tensor.tensor_type)
    w = np.ascontiguousarray(data, dtype=np.float32).reshape(tensor_shape(tensor))
    n_head = int(gguf.arch_get("attention.head_count"))
    n_head_kv = int(gguf.arch_get("attention.head_count_kv", n_head))
    if tensor.name.endswith("attn_q.weight"):
        w = unpermute(w, n_head)
    elif tensor.name.endswith("attn_k.weight"):
        w = unpermute(w, n_head_kv)
    return np.ascontiguousarray(w)


def write_safetensors(gguf: Gguf, path: Path) -> None:
    """Writes every tensor as F32, one at a time (8-byte header length, JSON header, raw data)."""
    header, offset = {}, 0
    for t in gguf.reader.tensors:
        size = int(np.prod(tensor_shape(t))) * 4
        header[hf_name(t.name)] = {"dtype": "F32", "shape": list(tensor_shape(t)), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt", "source": "gguf_to_safetensors.py"}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for t in gguf.reader.tensors:
            w = load_tensor(gguf, t)
            assert w.nbytes == header[hf_name(t.name)]["data_offsets"][1] - header[hf_name(t.name)]["data_offsets"][0]
            f.write(w.astype("<f4", copy=False).tobytes())


def config_json(gguf: Gguf, tensor_names: set[str]) -> dict:
    """config.json of a LlamaForCausalLM from the GGUF metadata."""
    n_head = int(gguf.arch_get("attention.head_count"))
    hidden = int(gguf.arch_get("embedding_length"))
    vocab = len(gguf.get("tokenizer.ggml.tokens"))
    eps = float(str(np.float32(gguf.arch_get("attention.layer_norm_rms_epsilon"))))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(gguf.arch_get("feed_forward_length")),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(gguf.arch_get("attention.head_count_kv", n_head)),
        "num_hidden_layers": int(gguf.arch_get("block_count")),
        "head_dim": hidden // n_head,
        "hidden_act": "silu",
        "rms_norm_eps": eps,
        "rope_theta": float(gguf.arch_get("rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "max_position_embeddings": int(gguf.arch_get("context_length")),
        "vocab_size": int(gguf.arch_get("vocab_size", vocab)),
        "tie_word_embeddings": "lm_head.weight" not in tensor_names,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": gguf.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": gguf.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": gguf.get("tokenizer.ggml.padding_token_id"),
        "torch_dtype": "float32",
    }


def tokenizer_json(gguf: Gguf) -> dict:
    """tokenizer.json: byte-level BPE; control/user-defined tokens become added tokens."""
    if gguf.get("tokenizer.ggml.model") != "gpt2":
        sys.exit(f"unsupported tokenizer {gguf.get('tokenizer.ggml.model')!r}: only byte-level BPE (gpt2)")
    pre = gguf.get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        sys.exit(f"unsupported pre-tokenizer {pre!r}: known are {sorted(PRE_TOKENIZERS)}")
    tokens = gguf.get("tokenizer.ggml.tokens")
    types = gguf.get("tokenizer.ggml.token_type") or [TOKEN_NORMAL] * len(tokens)
    merges = [m.split(" ", 1) for m in gguf.get("tokenizer.ggml.merges")]
    added = [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": kind == TOKEN_CONTROL,
        }
        for i, (tok, kind) in enumerate(zip(tokens, types))
        if kind in (TOKEN_CONTROL, TOKEN_USER_DEFINED)
    ]
    post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    bos = gguf.get("tokenizer.ggml.bos_token_id")
    if gguf.get("tokenizer.ggml.add_bos_token", False) and bos is not None:
        item = {"SpecialToken": {"id": tokens[bos], "type_id": 0}}
        post = {
            "type": "TemplateProcessing",
            "single": [item, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [item, {"Sequence": {"id": "A", "type_id": 0}}, item, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {tokens[bos]: {"id": tokens[bos], "ids": [bos], "tokens": [tokens[bos]]}},
        }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": PRE_TOKENIZERS[pre],
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": merges,
        },
    }


def tokenizer_config_json(gguf: Gguf) -> dict:
    """tokenizer_config.json: the special tokens' texts and the chat template."""
    tokens = gguf.get("tokenizer.ggml.tokens")

    def text(key: str):
        i = gguf.get(f"tokenizer.ggml.{key}")
        return tokens[i] if i is not None else None

    config = {
        "add_bos_token": bool(gguf.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(gguf.get("tokenizer.ggml.add_eos_token", False)),
        "bos_token": text("bos_token_id"),
        "eos_token": text("eos_token_id"),
        "unk_token": text("unknown_token_id"),
        "pad_token": text("padding_token_id"),
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(gguf.arch_get("context_length")),
        "tokenizer_class": "GPT2Tokenizer",
    }
    if (template := gguf.get("tokenizer.chat_template")) is not None:
        config["chat_template"] = template
    return config


def generation_config_json(gguf: Gguf) -> dict:
    return {
        "bos_token_id": gguf.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": gguf.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": gguf.get("tokenizer.ggml.padding_token_id"),
    }


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def convert(gguf_path: Path, out: Path) -> None:
    gguf = Gguf(gguf_path)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    names = {hf_name(t.name) for t in gguf.reader.tensors}
    write_safetensors(gguf, partial / "model.safetensors")
    write_json(partial / "config.json", config_json(gguf, names))
    write_json(partial / "tokenizer.json", tokenizer_json(gguf))
    write_json(partial / "tokenizer_config.json", tokenizer_config_json(gguf))
    write_json(partial / "generation_config.json", generation_config_json(gguf))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
