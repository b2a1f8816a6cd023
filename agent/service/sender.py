"""Delivers spooled reports to the collector: gzip over HTTPS, verified TLS.

The standard library's HTTP client keeps the agent small (no aiohttp in a
64 MB budget).  Outcomes are data, not exceptions: `deliver` says whether
the collector acknowledged, refused for good, or should be retried later.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal

from agent.service.spool import SpooledReport

log = logging.getLogger("erpath.agent.sender")

Outcome = Literal["acked", "refused", "retry"]
REPORTS_PATH = "/api/v1/reports"


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    status: int | None
    detail: str
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class CollectorEndpoint:
    url: str
    token: str
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    timeout_s: float = 10.0

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.client_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx


class Sender:
    def __init__(self, endpoint: CollectorEndpoint):
        self.endpoint = endpoint
        self._ssl = endpoint.ssl_context()
        self._url = endpoint.url.rstrip("/") + REPORTS_PATH

    def deliver(self, item: SpooledReport) -> Delivery:
        req = urllib.request.Request(
            self._url,
            data=item.body_gzip(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Authorization": f"Bearer {self.endpoint.token}",
            },
        )
        try:
            with urllib.request.urlopen(
                req, timeout=self.endpoint.timeout_s, context=self._ssl
            ) as resp:
                return Delivery("acked", resp.status, "accepted")
        except urllib.error.HTTPError as e:
            return _classify_http_error(e)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            return Delivery("retry", None, f"collector unreachable: {reason}")


def _classify_http_error(e: urllib.error.HTTPError) -> Delivery:
    try:
        body = json.loads(e.read(65536) or b"{}")
        detail = body.get("detail") or body.get("title") or e.reason
    except (ValueError, OSError, AttributeError):
        detail = str(e.reason)
    retry_after = None
    if (ra := e.headers.get("Retry-After")) and ra.isdigit():
        retry_after = float(ra)
    # 400/413/422: this report can never be accepted; keeping it would block
    # every later one.  401/403: a token problem the admin must fix — keep
    # the reports and retry, so they arrive once the token is right.
    if e.code in (400, 413, 415, 422):
        return Delivery("refused", e.code, str(detail))
    return Delivery("retry", e.code, str(detail), retry_after)
