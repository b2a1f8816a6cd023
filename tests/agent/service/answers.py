"""A real HTTP server on loopback that answers every request with one scripted answer.

It stands in for what sits between an agent and its collector when that is
not the collector: a redirecting load balancer, a proxy's 413 page, a
captive portal's 200, a collector of an older release.  Every request it
gets is recorded (method, path, headers) so a test can prove what the agent
did not send.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def problem(cls, status: int, **doc: Any) -> Answer:
        doc = {"type": "about:blank", "title": "x", "status": status, **doc}
        return cls(status, json.dumps(doc).encode(), {"Content-Type": "application/problem+json"})


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]


class AnswerServer:
    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None):
        self.answer = answer
        self.requests: list[Request] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append(Request(self.command, self.path, dict(self.headers)))
                a = outer.answer
                self.send_response(a.status)
                for k, v in a.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(a.body)))
                self.end_headers()
                self.wfile.write(a.body)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> AnswerServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
