#!/usr/bin/env python3
"""Sentence embeddings: sentence-transformers vs MaaS, in sentences per second.

Run by bench/embeddings.sh, which builds the binaries and starts the server. Rows
(bench/README.md has the method):
  sentence-transformers  SentenceTransformer.encode in a subprocess of the st-venv's Python
                         (torch with the same threads), batch B
  in-process             crates/maas-runtime/examples/embed_bench: EmbeddingBackend::infer
                         straight, no server, batch B
  server                 POST /v1/embeddings with B texts per request, sequential calls, against
                         a deployment of the same folder (format safetensors)

Every variant embeds the same N generated sentences (9-27 tokens each) in batches of B, once to
warm up and then ROUNDS times; the median round is reported. Only the standard library is used
here, so the script runs under any Python 3.9+ (the `st` subcommand needs sentence-transformers).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import urllib.parse

TENANT = "bench"
PASSWORD = "bench-password-1"
MODEL = "minilm"
DEPLOYMENT = "minilm"

# Words that are single tokens of the BERT uncased vocabulary: a sentence of n words plus a
# final period is n + 3 tokens with [CLS] and [SEP].
WORDS = """the a model server vector quick brown fox jumps over lazy dog data cloud request batch token
river mountain city music paper small large fast slow green blue red house garden morning evening people
computer network memory search question answer language world water light night day year time work school
family friend story book table window door street car train plane ship road bridge forest field flower tree
bird cat horse fish sea sky sun moon star rain snow wind fire stone gold silver market price money bank
doctor teacher student child woman man king queen game team player ball song film picture camera phone""".split()


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def sentences(n: int, seed: int = 2026) -> list[str]:
    """n deterministic sentences of 9 to 27 tokens (6 to 24 words and a period)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 24))]
        out.append(" ".join(words).capitalize() + ".")
    return out


def rounds_of(batch_call, texts: list[str], batch: int, rounds: int) -> list[float]:
    """Sentences per second of `rounds` passes over `texts` in batches, after one warm-up pass."""

    def one_pass() -> float:
        started = time.perf_counter()
        for i in range(0, len(texts), batch):
            batch_call(texts[i : i + batch])
        return len(texts) / (time.perf_counter() - started)

    one_pass()
    return [one_pass() for _ in range(rounds)]


# --- sentence-transformers (run as a subprocess in the st-venv) ----------------------------


def run_st(args) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model_dir, device="cpu", local_files_only=True)
    texts = sentences(args.sentences)
    each = rounds_of(lambda b: model.encode(b, batch_size=len(b)), texts, args.batch, args.rounds)
    tokens = [int(n) for n in getattr(model, "preprocess", model.tokenize)(texts)["attention_mask"].sum(dim=1)]
    print(
        json.dumps(
            {
                "each": each,
                "version": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
                "threads": torch.get_num_threads(),
                "tokens": [min(tokens), max(tokens), sum(tokens) / len(tokens)],
            }
        )
    )
    return 0


# --- the server ------------------------------------------------------------------------------


class Http:
    """Keep-alive JSON calls to the server."""

    def __init__(self, addr: str):
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=600)
        self.cookie = ""
        self.key = ""

    def call(self, method: str, path: str, body=None, raw: bytes | None = None, headers=None) -> tuple[int, object]:
        h = dict(headers or {})
        if self.cookie:
            h["cookie"] = self.cookie
        if self.key:
            h["authorization"] = f"Bearer {self.key}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["content-type"] = "application/json"
        self.conn.request(method, path, body=data, headers=h)
        r = self.conn.getresponse()
        content = r.read()
        cookie = r.getheader("set-cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        try:
            return r.status, json.loads(content) if content else None
        except ValueError:
            return r.status, content.decode(errors="replace")

    def ok(self, method: str, path: str, expect: tuple[int, ...], **kw):
        status, body = self.call(method, path, **kw)
        if status not in expect:
            raise Unavailable(f"{method} {path} answered {status}: {str(body)[:300]}")
        return body


class Unavailable(Exception):
    """The server cannot serve the benchmark (yet); the message says which call failed."""


def deploy(http: Http, model_dir: str, batch: int, threads: int) -> None:
    """Registers, uploads the whole folder as a safetensors version, publishes and deploys it.
    The deployment contract lives here only: adjust this function when it changes."""
    for user in ("bench-admin", TENANT):  # the first user is the platform admin: not the bench's
        http.ok("POST", "/api/v1/auth/register", (200, 201),
                body={"username": user, "email": f"{user}@example.com", "password": PASSWORD})
    http.ok("POST", "/api/v1/auth/login", (200,), body={"username": TENANT, "password": PASSWORD})
    http.ok("POST", "/api/v1/models", (201,),
            body={"tenant": TENANT, "name": MODEL, "task": "feature-extraction", "visibility": "private"})
    repo = f"/api/v1/models/{TENANT}/{MODEL}"
    http.ok("POST", f"{repo}/versions", (201,), body={"version": "1", "format": "safetensors"})
    for root, dirs, files in os.walk(model_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, model_dir).replace(os.sep, "/")
            data = open(path, "rb").read()
            headers = {"x-content-sha256": hashlib.sha256(data).hexdigest(), "content-type": "application/octet-stream"}
            http.ok("PUT", f"{repo}/versions/1/files/{urllib.parse.quote(rel)}", (200, 201), raw=data, headers=headers)
    http.ok("POST", f"{repo}/versions/1/publish", (200,))
    http.ok("POST", "/api/v1/deployments", (201, 202), body={
        "tenant": TENANT, "name": DEPLOYMENT, "model": f"{TENANT}/{MODEL}", "version": "1", "replicas": 1,
        "threads": threads, "queue_capacity": 1024,
        "batching": {"max_batch_size": batch, "max_queue_delay_us": 0},
    })
    deadline = time.monotonic() + 300
    while True:
        d = http.ok("GET", f"/api/v1/deployments/{TENANT}/{DEPLOYMENT}", (200,))
        if d.get("ready") is True:
            break
        if d.get("state") == "failed" or time.monotonic() > deadline:
            raise Unavailable(f"the deployment did not become ready: {d}")
        time.sleep(0.1)
    body = http.ok("POST", f"/api/v1/tenants/{TENANT}/keys", (201,), body={"name": "bench-embeddings", "scopes": ["infer"]})
    http.cookie, http.key = "", body["key"]


def run_server(args, texts: list[str]) -> dict:
    """Sequential POST /v1/embeddings calls of B texts; raises Unavailable when the server cannot."""
    http = Http(args.http)
    deploy(http, args.model_dir, args.batch, args.threads)
    model = f"{TENANT}/{DEPLOYMENT}"
    dims = set()

    def call(batch: list[str]) -> None:
        status, body = http.call("POST", "/v1/embeddings", body={"model": model, "input": batch})
        if status != 200:
            raise Unavailable(f"POST /v1/embeddings answered {status}: {str(body)[:300]}")
        if len(body["data"]) != len(batch):
            raise RuntimeError(f"{len(batch)} texts gave {len(body['data'])} embeddings")
        dims.add(len(body["data"][0]["embedding"]))

    each = rounds_of(call, texts, args.batch, args.rounds)
    return {"each": each, "dims": sorted(dims)}


def run_direct(args) -> dict:
    """The Rust example: EmbeddingBackend::infer in its own process, no server."""
    out = subprocess.run(
        [args.embed_bench, args.model_dir, args.sentences_file, str(args.batch), str(args.rounds)],
        check=True, capture_output=True, text=True, env={**os.environ, "RAYON_NUM_THREADS": str(args.threads)},
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"each": r["each_per_s"], "threads": r["threads"]}


def run_reference(args) -> dict:
    """sentence-transformers in the st-venv, as a subprocess running this file's `st` command."""
    cmd = [args.st_python, os.path.abspath(__file__), "st", "--model-dir", args.model_dir, "--threads", str(args.threads),
           "--batch", str(args.batch), "--rounds", str(args.rounds), "--sentences", str(args.sentences)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the report ------------------------------------------------------------------------------


def fmt_each(each: list[float]) -> str:
    return " ".join(f"{x:.0f}" for x in each)


def report(args, results: dict, load_before, load_after) -> None:
    st = results.get("st")
    st_median = statistics.median(st["each"]) if isinstance(st, dict) else None
    print(f"all-MiniLM-L6-v2, {args.sentences} sentences of 9-27 tokens, batch {args.batch}, {args.threads} threads; "
          f"median of {args.rounds} rounds after a warm-up (sentences/s); ratio = row / sentence-transformers.\n")
    print("| row | sentences/s | each round | vs sentence-transformers | target | result |")
    print("| --- | ---: | --- | ---: | --- | --- |")
    rows = [
        ("st", "sentence-transformers `encode` (reference)", None),
        ("direct", "MaaS `EmbeddingBackend::infer` in-process (examples/embed_bench)", 2.0),
        ("server", "MaaS `POST /v1/embeddings`, sequential requests of one batch each", 2.0),
    ]
    for key, label, target in rows:
        r = results.get(key)
        if not isinstance(r, dict):
            print(f"| {label} | — | — | — | {'≥ 2×' if target else 'reference'} | {r or 'not run'} |")
            continue
        median = statistics.median(r["each"])
        ratio = f"{median / st_median:.2f}×" if st_median else "—"
        if target is None:
            verdict = "—"
        elif st_median:
            verdict = "**pass**" if median / st_median >= target else "**FAIL**"
        else:
            verdict = "no reference"
        print(f"| {label} | {median:.1f} | {fmt_each(r['each'])} | {ratio} | {'≥ 2×' if target else 'reference'} | {verdict} |")
    print()
    extra = []
    if isinstance(st, dict):
        lo, hi, mean = st["tokens"]
        extra.append(f"{st['version']} ({st['threads']} torch threads); tokens per sentence {lo}-{hi}, mean {mean:.1f}")
    cpu = platform.processor() or platform.machine()
    extra.append(f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}; load average "
                 f"{' '.join(load_before)} before, {' '.join(load_after)} after")
    print(f"`{args.command}`: " + "; ".join(extra) + ".")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    st = sub.add_parser("st", help="sentence-transformers alone (run in the st-venv); prints JSON")
    sent = sub.add_parser("sentences", help="writes the sentences, one per line")
    sent.add_argument("file")
    for q in (p, st, sent):
        q.add_argument("--sentences", type=int, default=256, help="sentences per round")
    for q in (p, st):
        q.add_argument("--model-dir", default=None, help="the sentence-transformers folder")
        q.add_argument("--threads", type=int, default=2)
        q.add_argument("--batch", type=int, default=32)
        q.add_argument("--rounds", type=int, default=5)
    p.add_argument("--http", help="the server's REST address host:port (no server row without it)")
    p.add_argument("--embed-bench", help="the release build of examples/embed_bench (no in-process row without it)")
    p.add_argument("--st-python", help="the st-venv's python (no reference row without it)")
    p.add_argument("--sentences-file", help="where to write the sentences for embed_bench")
    p.add_argument("--command", default=" ".join(sys.argv), help="the command line to print")
    args = p.parse_args()
    if args.cmd == "sentences":
        with open(args.file, "w", encoding="utf-8") as f:
            f.write("\n".join(sentences(args.sentences)) + "\n")
        return 0
    if args.model_dir is None or not os.path.isfile(os.path.join(args.model_dir, "config.json")):
        raise SystemExit(f"no model folder at {args.model_dir}: pass --model-dir (see bench/embeddings.sh)")
    if args.cmd == "st":
        return run_st(args)

    texts = sentences(args.sentences)
    load_before = open("/proc/loadavg").read().split()[:3]
    results: dict = {}
    if args.st_python:
        log(f"sentence-transformers with {args.threads} torch threads")
        results["st"] = run_reference(args)
    else:
        results["st"] = "skipped: no st-venv (see bench/README.md)"
    if args.embed_bench:
        args.sentences_file = args.sentences_file or "/tmp/maas-bench-sentences.txt"
        with open(args.sentences_file, "w", encoding="utf-8") as f:
            f.write("\n".join(texts) + "\n")
        log("in-process EmbeddingBackend (examples/embed_bench)")
        results["direct"] = run_direct(args)
    if args.http:
        log("server: deploying the folder and calling POST /v1/embeddings")
        try:
            results["server"] = run_server(args, texts)
        except Unavailable as e:
            log(f"server row not available: {e}")
            results["server"] = f"not available: {e}".replace("|", "/")[:200]
    load_after = open("/proc/loadavg").read().split()[:3]
    report(args, results, load_before, load_after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
