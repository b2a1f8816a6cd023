"""Delivers spooled reports to the collector: gzip over HTTPS, verified TLS.

The standard library's HTTP client keeps the agent small (no aiohttp in a
64 MB budget); `http.client`, not urllib, because it never follows a
redirect: a redirect would carry the bearer token (and the report) to
another host, possibly over plain HTTP, and a GET answered 200 there is no
acknowledgement.  Outcomes are data, not exceptions: `deliver` says whether
the collector acknowledged this very report, refused it for good, or should
be asked again later, with a code and a sentence saying why.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from agent.report import SCHEMA
from agent.service.spool import SpooledReport

log = logging.getLogger("erpath.agent.sender")

# acked: stored by the collector (accepted or a duplicate of a stored one);
# refused: can never be accepted (invalid, or larger than the collector takes);
# conflict: the collector holds another report under this seq (409), final;
# gone: the spool dropped the file meanwhile (its bounds); retry: ask again later.
Outcome = Literal["acked", "refused", "conflict", "gone", "retry"]
REPORTS_PATH = "/api/v1/reports"
PROBLEM_JSON = "application/problem+json"
MAX_ANSWER_BYTES = 65536


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    status: int | None
    # Closed set: accepted, duplicate, invalid-report, too-large, seq-conflict,
    # gone, unreachable, redirect, schema-unsupported, unsupported-encoding,
    # not-the-collector, unauthorized, rate-limited, unavailable, bad-answer.
    code: str
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
        """The verifying TLS context; raises OSError/ssl.SSLError for unreadable files."""
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
        parts = urlsplit(endpoint.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = parts.path.rstrip("/") + REPORTS_PATH

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self.endpoint.timeout_s, context=self._ssl
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.endpoint.timeout_s)

    def deliver(self, item: SpooledReport) -> Delivery:
        try:
            body = item.body_gzip()
        except FileNotFoundError:
            return Delivery("gone", None, "gone", "dropped from the spool by its bounds")
        except OSError as e:
            return Delivery("retry", None, "unreachable", f"spool file unreadable: {e}")
        conn = self._connection()
        try:
            conn.request(
                "POST",
                self._path,
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    "Authorization": f"Bearer {self.endpoint.token}",
                },
            )
            resp = conn.getresponse()
            answer = resp.read(MAX_ANSWER_BYTES)
        except (OSError, http.client.HTTPException, ValueError) as e:
            # ValueError: http.client refuses a header with a line break (a
            # bad token) before anything is sent.
            return Delivery("retry", None, "unreachable", f"collector unreachable: {e}")
        finally:
            conn.close()
        return classify(item, resp.status, resp.getheader, answer)


def classify(item: SpooledReport, status: int, header: Any, answer: bytes) -> Delivery:
    """What the collector's answer means for this report (pure: tested without a network)."""
    content_type = (header("Content-Type") or "").split(";")[0].strip().lower()
    doc = _json(answer)
    retry_after = _retry_after(header("Retry-After"))
    if status in (200, 201):
        if doc.get("id") == item.report_id and doc.get("status") in ("accepted", "duplicate"):
            return Delivery("acked", status, doc["status"], f"{doc['status']} as {item.report_id}")
        return Delivery(
            "retry",
            status,
            "bad-answer",
            f"HTTP {status} does not acknowledge report {item.report_id} "
            f"(answer names id {doc.get('id')!r}, status {doc.get('status')!r}); "
            "is [collector] url the collector?",
        )
    if 300 <= status < 400:
        return Delivery(
            "retry",
            status,
            "redirect",
            f"the collector redirected to {header('Location') or '(no Location)'}; redirects "
            "are not followed (the token would go there): set [collector] url to the final "
            "address",
        )
    # Only the collector's own problem+json speaks for the report; a proxy's
    # 413 or 400 page says nothing about whether the collector would take it.
    problem = doc if content_type == PROBLEM_JSON and "type" in doc else None
    detail = str((problem or {}).get("detail") or f"HTTP {status}")
    if status == 409 and problem is not None:
        return Delivery("conflict", status, "seq-conflict", detail)
    supported = (problem or {}).get("supported_schemas")
    if status == 422 and isinstance(supported, list):
        supported = [str(s) for s in supported]
        if SCHEMA not in supported:
            return Delivery(
                "retry",
                status,
                "schema-unsupported",
                f"collector does not support {SCHEMA} yet (it takes {', '.join(supported)})",
                retry_after,
            )
    if problem is not None and status in (400, 422):
        return Delivery("refused", status, "invalid-report", detail)
    if problem is not None and status == 413:
        return Delivery("refused", status, "too-large", detail)
    if status == 415:
        # The collector does not take our encoding: a collector to upgrade, not a bad report.
        return Delivery("retry", status, "unsupported-encoding", detail, retry_after)
    if status in (401, 403):
        # A token or certificate problem the admin must fix: keep the reports.
        return Delivery("retry", status, "unauthorized", detail, retry_after)
    if status == 429:
        return Delivery("retry", status, "rate-limited", detail, retry_after)
    if status >= 500:
        return Delivery("retry", status, "unavailable", detail, retry_after)
    return Delivery(
        "retry",
        status,
        "not-the-collector",
        f"HTTP {status} ({content_type or 'no content type'}) is not the collector's answer "
        f"(a proxy?): {detail}",
        retry_after,
    )


def _json(answer: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(answer or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _retry_after(value: str | None) -> float | None:
    return float(value) if value and value.isdigit() else None
