#!/usr/bin/env python3
"""Text generation through `maas serve`'s OpenAI API compared with llama.cpp (llama-cpp-python).

Run by bench/llm.sh, which starts the server; alone it needs a running `maas serve` with an
empty store (this script registers the first two users), the test venv (scripts/pyenv.sh)
and a Python with llama-cpp-python (--ref-python, the bench venv ~/.cache/maas/bench-venv).

Both engines get the same GGUF file, the same chat messages, greedy sampling (temperature 0),
max_tokens and threads. The reference runs in a subprocess of the bench venv (this same file
with --reference-worker), driven one request at a time over stdin/stdout so that its rounds
alternate with the server's and a slow moment of the machine hits both alike.

Rows (bench/README.md has the method):
  (1) decode tokens/s of one stream: (completion tokens - 1) / (last token time - first token time)
  (2) time to first token: from the request being sent to the first chunk with text
  (3) aggregate tokens/s of 8 streams: the server runs them concurrently (one connection and
      thread each, all sent together), llama-cpp-python one after another (no batching):
      all completion tokens / wall time from the first send to the last token

Every timing is time.perf_counter in the client, taken the same way on both sides: just
before the call, and at each streamed chunk that carries text. llama-cpp-python's prompt
cache is reset before every request (`Llama.reset()`), so each request evaluates its whole
prompt, as the server does.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

from benchhttp import Http, Unavailable

TENANT = "bench"
PASSWORD = "bench-password-1"
MODEL = "smollm"
DEPLOYMENT = "smollm"

# The user message: about 97 tokens of the SmolLM2 tokenizer; it asks for a long answer, so
# that greedy decoding runs to max_tokens rather than stopping early.
PROMPT = (
    "You are writing a chapter for a travel guide. Describe, in great detail and in several long "
    "paragraphs, a slow walk through an old harbour town on a cold winter morning: the fishing "
    "boats coming back, the smell of bread from the bakeries, the narrow streets of grey stone, "
    "the market where people sell fish, cheese and apples, the church bells, the sea birds and "
    "the light on the water. Tell the reader what to see, what to eat and where to rest."
)
MESSAGES = [{"role": "user", "content": PROMPT}]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def stream_stats(t0: float, times: list[float], tokens: int) -> dict:
    """TTFT and decode rate from the send time and the arrival times of the text chunks."""
    if not times:
        return {"ttft": None, "decode": None, "tokens": tokens, "chunks": 0, "t0": t0, "t_last": t0}
    span = times[-1] - times[0]
    decode = (tokens - 1) / span if tokens > 1 and span > 0 else None
    return {"ttft": times[0] - t0, "decode": decode, "tokens": tokens, "chunks": len(times), "t0": t0,
            "t_last": times[-1]}


# --- the reference: llama-cpp-python in a subprocess of the bench venv ------------------------


def reference_worker(args) -> int:
    """Answers JSON requests on stdin, one JSON line on stdout each (run by the bench venv)."""
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=args.model, n_threads=args.threads, n_threads_batch=args.threads, n_ctx=2048,
                verbose=False)
    out = sys.stdout
    print(json.dumps({"ready": True, "version": llama_cpp.__version__}), file=out, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        llm.reset()  # no prompt cache: every request evaluates its whole prompt
        if req["op"] == "info":  # the prompt as the engine sees it (non-streamed, one token)
            r = llm.create_chat_completion(messages=req["messages"], temperature=0, max_tokens=1)
            print(json.dumps({"prompt_tokens": r["usage"]["prompt_tokens"]}), file=out, flush=True)
            continue
        perf = time.perf_counter
        times, parts = [], []
        t0 = perf()
        for chunk in llm.create_chat_completion(messages=req["messages"], temperature=0,
                                                max_tokens=req["max_tokens"], stream=True):
            text = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if text:
                times.append(perf())
                parts.append(text)
        text = "".join(parts)
        # llama-cpp-python's stream has no usage: count the generated tokens (every generated
        # token is in the context after the prompt; the last one is not evaluated).
        tokens = len(llm.tokenize(text.encode(), add_bos=False, special=True))
        res = stream_stats(t0, times, tokens)
        res["text"] = text
        print(json.dumps(res), file=out, flush=True)
    return 0


class Reference:
    """Drives the reference worker subprocess."""

    def __init__(self, args):
        cmd = [args.ref_python, os.path.abspath(__file__), "--reference-worker", "--model", args.model,
               "--threads", str(args.threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = self.recv()
        self.version = hello["version"]

    def recv(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the llama-cpp-python worker exited ({self.proc.wait()})")
        return json.loads(line)

    def send(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self.recv()

    def prompt_tokens(self) -> int:
        return self.send({"op": "info", "messages": MESSAGES})["prompt_tokens"]

    def run(self, max_tokens: int) -> dict:
        return self.send({"op": "run", "messages": MESSAGES, "max_tokens": max_tokens})

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --- the server ---------------------------------------------------------------------------------


def deploy(http: Http, gguf: str, threads: int, max_sequences: int) -> str:
    """Registers, uploads the GGUF file, publishes and deploys it; returns an `infer` key.
    The deployment contract lives here only: adjust this function when it changes."""
    repo = http.new_version(TENANT, PASSWORD, MODEL, "text-generation", "gguf")
    data = open(gguf, "rb").read()
    headers = {"x-content-sha256": hashlib.sha256(data).hexdigest(), "content-type": "application/octet-stream"}
    http.ok("PUT", f"{repo}/versions/1/files/model.gguf", (200, 201), raw=data, headers=headers)
    http.ok("POST", f"{repo}/versions/1/publish", (200,))
    http.ok("POST", "/api/v1/deployments", (201, 202), body={
        "tenant": TENANT, "name": DEPLOYMENT, "model": f"{TENANT}/{MODEL}", "version": "1",
        "threads": threads, "generation": {"max_sequences": max_sequences},
    })
    deadline = time.monotonic() + 300
    while True:
        d = http.ok("GET", f"/api/v1/deployments/{TENANT}/{DEPLOYMENT}", (200,))
        if d.get("ready") is True:
            break
        if d.get("state") == "failed" or time.monotonic() > deadline:
            raise Unavailable(f"the deployment did not become ready: {d}")
        time.sleep(0.1)
    body = http.ok("POST", f"/api/v1/tenants/{TENANT}/keys", (201,), body={"name": "bench-llm", "scopes": ["infer"]})
    return body["key"]


class ServerStream:
    """One keep-alive connection that sends streamed chat completions and times the chunks."""

    def __init__(self, addr: str, key: str):
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=600)
        self.conn.connect()
        self.headers = {"authorization": f"Bearer {key}", "content-type": "application/json",
                        "accept": "text/event-stream"}

    def run(self, max_tokens: int) -> dict:
        body = json.dumps({"model": f"{TENANT}/{DEPLOYMENT}", "messages": MESSAGES, "stream": True,
                           "temperature": 0, "max_tokens": max_tokens,
                           "stream_options": {"include_usage": True}}).encode()
        perf = time.perf_counter
        times, parts, usage = [], [], None
        t0 = perf()
        self.conn.request("POST", "/v1/chat/completions", body=body, headers=self.headers)
        r = self.conn.getresponse()
        if r.status != 200:
            raise Unavailable(f"POST /v1/chat/completions answered {r.status}: {r.read()[:300]!r}")
        while True:
            line = r.readline()
            if not line:
                break
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise Unavailable(f"the stream failed: {event['error']}")
            choices = event.get("choices") or []
            text = choices[0].get("delta", {}).get("content") if choices else None
            if text:
                times.append(perf())
                parts.append(text)
            if event.get("usage"):
                usage = event["usage"]
        r.read()  # the end of the chunked body, so the connection can be reused
        if usage is None:
            raise Unavailable("the stream had no usage chunk (stream_options.include_usage)")
        res = stream_stats(t0, times, usage["completion_tokens"])
        res["text"] = "".join(parts)
        res["prompt_tokens"] = usage["prompt_tokens"]
        return res


def server_concurrent(streams: list[ServerStream], max_tokens: int) -> dict:
    """All streams sent together from their own threads; aggregate tokens/s over the wall time."""
    results: list[dict | Exception] = [None] * len(streams)
    barrier = threading.Barrier(len(streams))

    def one(i: int) -> None:
        try:
            barrier.wait()
            results[i] = streams[i].run(max_tokens)
        except Exception as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(streams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise errors[0]
    return aggregate(results)


def reference_sequential(ref: Reference, n: int, max_tokens: int) -> dict:
    """The same n requests one after another in llama-cpp-python."""
    return aggregate([ref.run(max_tokens) for _ in range(n)])


def aggregate(results: list[dict]) -> dict:
    """Total completion tokens over the wall time from the first send to the last token."""
    start = min(r["t0"] for r in results)
    end = max(r["t_last"] for r in results)
    tokens = sum(r["tokens"] for r in results)
    return {"rate": tokens / (end - start), "tokens": tokens, "wall": end - start,
            "ttft": [r["ttft"] for r in results], "decode": [r["decode"] for r in results]}


# --- the report ---------------------------------------------------------------------------------


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average " + " ".join(open("/proc/loadavg").read().split()[:3])


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fmt_each(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    return " ".join(f"{v * scale:.{digits}f}" for v in values)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def report(args, s1: list[dict], r1: list[dict], s3: list[dict], r3: list[dict], info: dict) -> None:
    sd = statistics.median(r["decode"] for r in s1)
    rd = statistics.median(r["decode"] for r in r1)
    st = statistics.median(r["ttft"] for r in s1)
    rt = statistics.median(r["ttft"] for r in r1)
    sa = statistics.median(r["rate"] for r in s3)
    ra = statistics.median(r["rate"] for r in r3)
    n = args.concurrency
    print(f"SmolLM2-135M-Instruct Q4_1 (GGUF), {args.threads} threads, greedy (temperature 0), max_tokens "
          f"{args.max_tokens}, streamed chat completions; median of {args.rounds} alternating rounds after a "
          f"warm-up; ratio = ours / llama.cpp.\n")
    print("| row | ours (maas serve, /v1/chat/completions) | llama.cpp (llama-cpp-python, in-process) | ours / llama.cpp "
          "| target | result |")
    print("| --- | --- | --- | ---: | --- | --- |")
    print(f"| (1) decode tokens/s, one stream | **{sd:.1f}** (each: {fmt_each([r['decode'] for r in s1])}) "
          f"| **{rd:.1f}** (each: {fmt_each([r['decode'] for r in r1])}) | {sd / rd:.2f}× | ≥ 0.9× "
          f"| {verdict(sd / rd >= 0.9)} |")
    print(f"| (2) time to first token, {info['server_prompt']}-token prompt | **{st * 1e3:.1f} ms** "
          f"(each: {fmt_each([r['ttft'] for r in s1], 1e3)}) | **{rt * 1e3:.1f} ms** "
          f"(each: {fmt_each([r['ttft'] for r in r1], 1e3)}) | {st / rt:.2f}× | ≤ 1.1× | {verdict(st / rt <= 1.1)} |")
    s_ttft = statistics.median(t for r in s3 for t in r["ttft"])
    s_dec = statistics.median(d for r in s3 for d in r["decode"] if d)
    print(f"| (3) aggregate tokens/s, {n} streams (ours concurrent, llama.cpp one after another) | **{sa:.1f}** "
          f"(each: {fmt_each([r['rate'] for r in s3])}; per stream: TTFT p50 {s_ttft * 1e3:.0f} ms, decode p50 "
          f"{s_dec:.1f} tok/s) | **{ra:.1f}** (each: {fmt_each([r['rate'] for r in r3])}) | {sa / ra:.2f}× "
          f"| for information | — |")
    print()
    same = s1[0]["text"] == r1[0]["text"]
    print(f"Prompt: a {info['words']}-word user message; prompt tokens after the chat template: ours "
          f"{info['server_prompt']}, llama.cpp {info['ref_prompt']}. Completion tokens per stream: ours "
          f"{sorted({r['tokens'] for r in s1})}, llama.cpp {sorted({r['tokens'] for r in r1})}. Greedy texts "
          f"{'identical' if same else 'differ'}" + ("" if same else
          f" (ours: {s1[0]['text'][:80]!r}…; llama.cpp: {r1[0]['text'][:80]!r}…)") + ".")
    print(f"\n`{args.command}` on {os.cpu_count()} CPUs ({cpu_model()}), llama-cpp-python {info['ref_version']}, "
          f"Python {platform.python_version()}.")
    print(f"\nuptime before: {info['uptime_before']}  \nuptime after:  {info['uptime_after']}")
    load = max(info["load_before"], float(open("/proc/loadavg").read().split()[0]))
    if load > 2:
        print(f"\nNote: the load average was above 2 ({load:.2f}): the machine was shared with other work "
              f"while measuring, so the absolute numbers are low and noisy; the ratios are the part to read.")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", required=True, help="the GGUF file")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--http", help="the server's REST address host:port")
    p.add_argument("--ref-python", help="a Python with llama-cpp-python")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5, help="rounds of rows (1)/(2)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--concurrent-rounds", type=int, default=2, help="rounds of row (3)")
    p.add_argument("--command", default="bench/llm.py")
    args = p.parse_args()
    if args.reference_worker:
        return reference_worker(args)
    if not args.http or not args.ref_python:
        p.error("--http and --ref-python are required")

    info = {"uptime_before": uptime(), "load_before": float(open("/proc/loadavg").read().split()[0]),
            "words": len(PROMPT.split())}
    log(f"deploying {args.model} ({args.threads} threads, max_sequences {args.concurrency})")
    http = Http(args.http)
    key = deploy(http, args.model, args.threads, args.concurrency)
    log("starting the llama-cpp-python worker")
    ref = Reference(args)
    info["ref_version"] = ref.version
    info["ref_prompt"] = ref.prompt_tokens()
    streams = [ServerStream(args.http, key) for _ in range(args.concurrency)]

    log("warm-up")
    info["server_prompt"] = streams[0].run(args.max_tokens)["prompt_tokens"]
    ref.run(args.max_tokens)

    s1, r1 = [], []
    for i in range(args.rounds):
        s1.append(streams[0].run(args.max_tokens))
        r1.append(ref.run(args.max_tokens))
        log(f"round {i + 1}/{args.rounds}: decode ours {s1[-1]['decode']:.1f} tok/s, llama.cpp "
            f"{r1[-1]['decode']:.1f} tok/s; TTFT ours {s1[-1]['ttft'] * 1e3:.1f} ms, llama.cpp "
            f"{r1[-1]['ttft'] * 1e3:.1f} ms")
    s3, r3 = [], []
    for i in range(args.concurrent_rounds):
        s3.append(server_concurrent(streams, args.max_tokens))
        r3.append(reference_sequential(ref, args.concurrency, args.max_tokens))
        log(f"{args.concurrency} streams, round {i + 1}/{args.concurrent_rounds}: ours {s3[-1]['rate']:.1f} tok/s, "
            f"llama.cpp {r3[-1]['rate']:.1f} tok/s")
    ref.close()
    info["uptime_after"] = uptime()
    report(args, s1, r1, s3, r3, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
