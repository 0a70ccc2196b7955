"""Keep-alive JSON calls to `maas serve` for the bench scripts (embeddings.py, llm.py): one
connection, the session cookie kept after login, an API key sent once set."""

from __future__ import annotations

import http.client
import json


class Unavailable(Exception):
    """The server cannot serve the benchmark (yet); the message says which call failed."""


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

    def new_version(self, tenant: str, password: str, model: str, task: str, fmt: str) -> str:
        """Registers a platform admin (the first user; not the bench's) and `tenant`, logs in as
        `tenant`, creates the private model `model` and its version 1 of format `fmt`; returns
        the model's API path."""
        for user in ("bench-admin", tenant):
            self.ok("POST", "/api/v1/auth/register", (200, 201),
                    body={"username": user, "email": f"{user}@example.com", "password": password})
        self.ok("POST", "/api/v1/auth/login", (200,), body={"username": tenant, "password": password})
        self.ok("POST", "/api/v1/models", (201,),
                body={"tenant": tenant, "name": model, "task": task, "visibility": "private"})
        repo = f"/api/v1/models/{tenant}/{model}"
        self.ok("POST", f"{repo}/versions", (201,), body={"version": "1", "format": fmt})
        return repo
