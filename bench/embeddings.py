#!/usr/bin/env python3
"""Sentence embeddings: sentence-transformers vs MaaS, in sentences per second.

Run by bench/embeddings.sh, which builds the binaries and starts the server. Rows
(bench/README.md has the method):
  sentence-transformers  SentenceTransformer.encode per batch, in a subprocess of the st-venv's
                         Python (torch with the same threads); with --st-bf16 also the model
                         in bfloat16, for information
  in-process             crates/maas-runtime/examples/embed_bench: EmbeddingBackend::infer per
                         batch, no server
  server                 POST /v1/embeddings with one batch per request, sequential calls,
                         against a deployment of the same folder (format safetensors), with
                         `encoding_format` base64 as the openai SDK sends by default
                         (--encoding float for JSON numbers)

Every variant embeds the same N generated sentences (9-27 tokens each) in batches of B. Each
variant is loaded and warmed up once, then the rounds alternate between the variants (round 1
of each, round 2 of each, ...), so that a slow moment of the machine hits all of them alike;
the median round is reported, with the CPU time (user + system, from /proc) the variant's
process spent per round. Only the standard library is used here, so the script runs under any
Python 3.9+ (the `st` subcommand needs sentence-transformers).
"""

from __future__ import annotations

import argparse
import array
import base64
import hashlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import urllib.parse

from benchhttp import Http, Unavailable

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


def one_pass(batch_call, texts: list[str], batch: int) -> float:
    """Sentences per second of one pass over `texts` in batches."""
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        batch_call(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - started)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process `pid` (0 when unknown)."""
    if not pid:
        return 0.0
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def background_load(seconds: float = 2.0) -> float:
    """Fraction of the machine's CPU busy while this script sleeps (others' work)."""

    def busy_total() -> tuple[int, int]:
        vals = [int(v) for v in open("/proc/stat").readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals) - idle, sum(vals)

    b0, t0 = busy_total()
    time.sleep(seconds)
    b1, t1 = busy_total()
    return (b1 - b0) / max(1, t1 - t0)


# --- sentence-transformers (the `st` subcommand, run in the st-venv) -------------------------


def run_st(args) -> int:
    """Loads the model, warms up, prints `ready`, then one pass per line read from stdin."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model_dir, device="cpu", local_files_only=True)
    if args.dtype == "bfloat16":
        model = model.to(torch.bfloat16)
    texts = sentences(args.sentences)
    tokens = [int(n) for n in getattr(model, "preprocess", model.tokenize)(texts)["attention_mask"].sum(dim=1)]
    encode = lambda b: model.encode(b, batch_size=len(b))  # noqa: E731
    one_pass(encode, texts, args.batch)
    info = {
        "version": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "tokens": [min(tokens), max(tokens), sum(tokens) / len(tokens)],
    }
    print(json.dumps({"ready": info}), flush=True)
    for _ in sys.stdin:
        print(json.dumps({"per_s": one_pass(encode, texts, args.batch)}), flush=True)
    return 0


class Child:
    """A variant in a subprocess that prints a first line when warm and then runs one pass per
    line it reads, answering with a JSON line holding `per_s`."""

    def __init__(self, name: str, cmd: list[str], env: dict | None = None):
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        first = self.proc.stdout.readline()
        if not first:
            raise RuntimeError(f"{name}: the subprocess exited before it was ready ({self.proc.wait()})")
        self.ready = first.strip()
        self.pid = self.proc.pid

    def round(self) -> float:
        self.proc.stdin.write("round\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the subprocess exited ({self.proc.wait()})")
        return json.loads(line)["per_s"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# --- the server ------------------------------------------------------------------------------


def deploy(http: Http, model_dir: str, batch: int, threads: int) -> None:
    """Registers, uploads the whole folder as a safetensors version, publishes and deploys it.
    The deployment contract lives here only: adjust this function when it changes."""
    repo = http.new_version(TENANT, PASSWORD, MODEL, "feature-extraction", "safetensors")
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


class Server:
    """POST /v1/embeddings, one batch per request; raises Unavailable when the server cannot."""

    name = "server"

    def __init__(self, args, texts: list[str]):
        self.http = Http(args.http)
        self.texts, self.batch, self.pid = texts, args.batch, args.server_pid
        self.encoding = args.encoding
        deploy(self.http, args.model_dir, args.batch, args.threads)
        self.model = f"{TENANT}/{DEPLOYMENT}"
        self.dims: set[int] = set()
        one_pass(self.call, texts, args.batch)

    def call(self, batch: list[str]) -> None:
        request = {"model": self.model, "input": batch, "encoding_format": self.encoding}
        status, body = self.http.call("POST", "/v1/embeddings", body=request)
        if status != 200:
            raise Unavailable(f"POST /v1/embeddings answered {status}: {str(body)[:300]}")
        if len(body["data"]) != len(batch):
            raise RuntimeError(f"{len(batch)} texts gave {len(body['data'])} embeddings")
        # Decoded as the SDK does (it uses numpy.frombuffer; array is the standard library's).
        vectors = [self.decode(item["embedding"]) for item in body["data"]]
        self.dims.update(len(v) for v in vectors)

    def decode(self, embedding) -> list[float] | array.array:
        if self.encoding == "float":
            return embedding
        vector = array.array("f")
        vector.frombytes(base64.b64decode(embedding))
        return vector

    def round(self) -> float:
        return one_pass(self.call, self.texts, self.batch)

    def close(self) -> None:
        pass


# --- the report ------------------------------------------------------------------------------


def report(args, results: dict, notes: dict, info: dict | None, idle: float, load_before, load_after) -> None:
    st = results.get("st")
    st_median = statistics.median(st["each"]) if st else None
    print(f"all-MiniLM-L6-v2, {args.sentences} sentences of 9-27 tokens, batch {args.batch}, {args.threads} threads; "
          f"median of {args.rounds} interleaved rounds after a warm-up; ratio = row / sentence-transformers.\n")
    print("| row | sentences/s | each round | vs sentence-transformers | CPU s per round | target | result |")
    print("| --- | ---: | --- | ---: | ---: | --- | --- |")
    rows = [
        ("st", "sentence-transformers `encode` (reference)", False),
        ("st_bf16", "sentence-transformers `encode`, the model in bfloat16 (`model.to(torch.bfloat16)`; for information)", None),
        ("direct", "MaaS `EmbeddingBackend::infer` in-process (examples/embed_bench)", True),
        ("server", f"MaaS `POST /v1/embeddings` ({args.encoding}), sequential requests of one batch each", True),
    ]
    for key, label, judged in rows:
        target = {True: "≥ 2×", False: "reference", None: "for information"}[judged]
        r = results.get(key)
        if not r:
            print(f"| {label} | — | — | — | — | {target} | {notes.get(key, 'not run')} |")
            continue
        median = statistics.median(r["each"])
        ratio = f"{median / st_median:.2f}×" if st_median else "—"
        if not judged:
            verdict = "—"
        elif st_median:
            verdict = "**pass**" if median / st_median >= 2.0 else "**FAIL**"
        else:
            verdict = "no reference"
        each = " ".join(f"{x:.0f}" for x in r["each"])
        cpu = f"{statistics.median(r['cpu']):.2f}" if any(r["cpu"]) else "—"
        print(f"| {label} | {median:.1f} | {each} | {ratio} | {cpu} | {target} | {verdict} |")
    print()
    extra = []
    if info:
        lo, hi, mean = info["tokens"]
        extra.append(f"{info['version']} ({info['threads']} torch threads); tokens per sentence {lo}-{hi}, mean {mean:.1f}")
    precision = os.environ.get("MAAS_RUNTIME__EMBEDDINGS_PRECISION", "auto")
    try:
        bf16 = "avx512_bf16" in open("/proc/cpuinfo").read()
    except OSError:
        bf16 = False
    products = "bfloat16" if precision == "auto" and bf16 else "float32"
    extra.append(f"MaaS dense products in {products} (embeddings_precision {precision}, "
                 f"CPU {'with' if bf16 else 'without'} AVX512_BF16)")
    extra.append(f"{os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}; machine "
                 f"{idle:.0%} busy with other work just before the runs; load average {' '.join(load_before)} "
                 f"before, {' '.join(load_after)} after")
    print(f"`{args.command}`: " + "; ".join(extra) + ".")
    if idle > 0.1:
        print("\nThe machine was busy with other work: torch's threads spin while they wait for each other "
              "and lose far more than the other rows when they share the cores, which flatters the ratios. "
              "Compare on an idle machine, or by the CPU seconds per round.")


def start_variants(args, texts: list[str]) -> tuple[list, dict, dict | None]:
    """Loads and warms up every variant that can run; notes say why the others do not."""
    variants, notes, info = [], {}, None
    if args.st_python:
        log(f"sentence-transformers with {args.threads} torch threads")
        cmd = [args.st_python, os.path.abspath(__file__), "st", "--model-dir", args.model_dir, "--threads",
               str(args.threads), "--batch", str(args.batch), "--sentences", str(args.sentences)]
        child = Child("st", cmd)
        info = json.loads(child.ready)["ready"]
        variants.append(child)
        if args.st_bf16:
            log("sentence-transformers, the model in bfloat16")
            variants.append(Child("st_bf16", cmd + ["--dtype", "bfloat16"]))
    else:
        notes["st"] = "skipped: no sentence-transformers venv (see bench/README.md)"
    if args.embed_bench:
        log("in-process EmbeddingBackend (examples/embed_bench)")
        with open(args.sentences_file, "w", encoding="utf-8") as f:
            f.write("\n".join(texts) + "\n")
        env = {**os.environ, "RAYON_NUM_THREADS": str(args.threads)}
        variants.append(Child("direct", [args.embed_bench, args.model_dir, args.sentences_file, str(args.batch), "0"], env))
    if args.http:
        log("server: deploying the folder and calling POST /v1/embeddings")
        try:
            variants.append(Server(args, texts))
        except Unavailable as e:
            log(f"server row not available: {e}")
            notes["server"] = f"not available: {e}".replace("|", "/")[:200]
    return variants, notes, info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    st = sub.add_parser("st", help="sentence-transformers alone, one pass per stdin line (run in the st-venv)")
    sent = sub.add_parser("sentences", help="writes the sentences, one per line")
    sent.add_argument("file")
    for q in (p, st, sent):
        q.add_argument("--sentences", type=int, default=256, help="sentences per round")
    st.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--st-bf16", action="store_true",
                   help="also time sentence-transformers with the model in bfloat16 (a row for information)")
    for q in (p, st):
        q.add_argument("--model-dir", default=None, help="the sentence-transformers folder")
        q.add_argument("--threads", type=int, default=2)
        q.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--http", help="the server's REST address host:port (no server row without it)")
    p.add_argument("--server-pid", type=int, help="the server's pid, for its CPU time")
    p.add_argument("--encoding", choices=["base64", "float"], default="base64",
                   help="the server row's encoding_format (base64: the openai SDK's default)")
    p.add_argument("--embed-bench", help="the release build of examples/embed_bench (no in-process row without it)")
    p.add_argument("--st-python", help="the st-venv's python (no reference row without it)")
    p.add_argument("--sentences-file", default="/tmp/maas-bench-sentences.txt", help="the sentences for embed_bench")
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
    idle = background_load()
    log(f"machine {idle:.0%} busy with other work")
    variants, notes, info = start_variants(args, texts)
    load_before = open("/proc/loadavg").read().split()[:3]
    results = {v.name: {"each": [], "cpu": []} for v in variants}
    log(f"{args.rounds} rounds of {', '.join(v.name for v in variants)}")
    for _ in range(args.rounds):
        for v in variants:
            cpu = cpu_seconds(v.pid)
            try:
                results[v.name]["each"].append(v.round())
            except Unavailable as e:  # the endpoint went away mid-run
                notes[v.name] = f"not available: {e}"[:200]
                results.pop(v.name, None)
                variants.remove(v)
                break
            results[v.name]["cpu"].append(cpu_seconds(v.pid) - cpu)
    for v in variants:
        v.close()
    load_after = open("/proc/loadavg").read().split()[:3]
    report(args, results, notes, info, idle, load_before, load_after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
