"""HTTP API handlers: ingest, read API, health, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import math
import re
import time
import zlib
from datetime import datetime
from importlib import resources
from typing import Any

from aiohttp import web

from agent import report_codec
from agent.report import SCHEMA, SUPPORTED_SCHEMAS, ReportError, report_from_dict
from collector import auth, caps, ingest, queries
from collector import metrics as exposition
from collector.keys import (
    ADDRESS_LIMITER,
    ADMISSION,
    AGENT_IN_FLIGHT,
    ALERT_SENDER,
    CLOCK,
    CONFIG,
    DECODER,
    EVALUATE_SOON,
    INGEST_SETTINGS,
    INSTRUMENTS,
    LEADERSHIP,
    LIMITER,
    READ_TOKEN,
    REGISTRY,
    RETRY_AFTER_WATCH,
    STORE,
    STORE_COLLECTOR,
    TOKENS,
)
from collector.problems import Problem, problem
from collector.store import StoreError

API = "/api/v1"
# generate_latest writes the classic text format; say so for every Prometheus version.
EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=report_codec.encode(data), content_type="application/json"
    )


# --------------------------------------------------------------------------- ingest


def _unauthorized(detail: str, message: str, challenge: str) -> Problem:
    return problem(
        401,
        "unauthorized",
        detail,
        ("header/Authorization", message),
        headers={"WWW-Authenticate": challenge},
    )


def _authenticate(request: web.Request) -> auth.Bearer:
    """Who the bearer token speaks for; 401 otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = 'Bearer realm="erpath"'
    if not header:
        raise _unauthorized(
            "no Authorization header; send 'Authorization: Bearer <agent token>'",
            "is required",
            challenge,
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized(
            "Authorization must be 'Bearer <agent token>'", "must use the Bearer scheme", challenge
        )
    found = request.app[TOKENS].identify(token.strip())
    if found is None:
        raise _revoked()
    return found


def _revoked() -> Problem:
    return _unauthorized(
        "the token is unknown or revoked; create one with 'erpath-collector token add AGENT_ID'",
        "token is unknown or revoked",
        'Bearer realm="erpath", error="invalid_token"',
    )


def _certificate_names(request: web.Request) -> list[str] | None:
    """Names of a verified client certificate (CN, DNS and URI SANs), or None without one.

    The ssl module only returns the certificate's fields when it was verified
    against client_ca_file; an unverified one (CERT_NONE) gives {} and binds nothing.
    """
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    names += [v for k, v in cert.get("subjectAltName", ()) if k in ("DNS", "URI")]
    return names


def _bind_certificate(names: list[str] | None, agent_id: str) -> None:
    """Mutual TLS: a verified client certificate (its `names`) must name the report's
    agent (CN or SAN)."""
    if names is not None and agent_id not in names:
        raise problem(
            403,
            "forbidden",
            f"the client certificate names {', '.join(map(repr, names)) or 'nothing'}; "
            f"it cannot report as agent {agent_id!r}",
            ("/agent/id", "must equal the client certificate's CN or a DNS/URI SAN"),
        )


def _bind_site(bearer: auth.Bearer, report: Any) -> None:
    """A token bound to a site and role reports for that site and role only: it cannot
    overwrite another site's circuits and NAT facts or file asymmetries for it."""
    for field, bound, reported in (
        ("site", bearer.site, report.agent.site),
        ("role", bearer.role, report.agent.role),
    ):
        if bound is not None and bound != reported:
            raise _mismatch(auth.Mismatch(field, bound, reported), bearer.agent_id)


def _mismatch(exc: auth.Mismatch, agent: str) -> Problem:
    return problem(
        403,
        "forbidden",
        f"the token of agent {agent!r} is bound to {exc.field} {exc.bound!r}; "
        f"it cannot report for {exc.field} {exc.reported!r} (issue a token with "
        f"'erpath-collector token add {agent} --site SITE --role ROLE' if the agent moved)",
        (f"/agent/{exc.field}", f"must be {exc.bound!r}, the token's {exc.field}"),
    )


def _apply_if_active(
    conn: Any, bearer: auth.Bearer, site: str, role: str, *args: Any
) -> ingest.Outcome:
    # Same transaction: a committed revoke wins at once, and an unbound token is bound
    # by exactly one report (the first one committed).
    auth.require_active(conn, bearer.token_id, site, role)
    return ingest.apply(conn, *args)


async def _read_body(request: web.Request, limit: int) -> bytes:
    too_big = problem(
        413,
        "body-too-large",
        f"the report is larger than {limit} bytes (after gzip decoding); "
        "send fewer results per report",
        ("body", f"larger than {limit} bytes"),
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_big
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise _unsupported(
            f"Content-Encoding {encoding!r} is not supported; send gzip or identity",
            "Content-Encoding",
            "must be gzip or identity",
        )
    ctype = request.content_type
    if ctype not in ("application/json", "application/octet-stream") and request.body_exists:
        raise _unsupported(
            f"Content-Type {ctype!r} is not JSON; send application/json",
            "Content-Type",
            "must be application/json",
        )
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    raw = b"".join(chunks)
    if encoding == "identity":
        return raw
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = d.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise problem(
            400,
            "bad-gzip",
            f"Content-Encoding is gzip but the body is not gzip ({exc})",
            ("body", "is not valid gzip"),
        ) from None
    if len(body) > limit:
        raise too_big
    if not d.eof:
        raise problem(
            400, "bad-gzip", "the gzip stream is truncated", ("body", "gzip stream is truncated")
        )
    return body


def _unsupported(detail: str, header: str, message: str) -> Problem:
    return problem(415, "unsupported-media-type", detail, (f"header/{header}", message))


# A \uD800-\uDFFF escape: JSON allows it alone, UTF-8 (and so SQLite) cannot store it.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate(node: Any, pointer: str = "") -> str | None:
    """JSON pointer of the first string (or key) holding a lone surrogate, else None."""
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            return pointer or "/"
    elif isinstance(node, dict):
        for k, v in node.items():
            where = f"{pointer}/{k.replace('~', '~0').replace('/', '~1')}"
            if (found := _lone_surrogate(k, where)) or (found := _lone_surrogate(v, where)):
                return found
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if found := _lone_surrogate(v, f"{pointer}/{i}"):
                return found
    return None


class _NotJson(ValueError):
    pass


def _not_json(token: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON (RFC 8259) does not have."""
    raise _NotJson(token)


def _parse_json(body: bytes) -> Any:
    if not body:
        raise problem(
            400, "bad-json", "the body is empty; send one report as JSON", ("body", "is empty")
        )
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_not_json)
        # Only bodies with such an escape pay for the walk (surrogate pairs, e.g. emoji, are fine).
        if _SURROGATE_ESCAPE.search(body) and (where := _lone_surrogate(doc)):
            raise problem(
                400,
                "bad-json",
                f"the body has a lone UTF-16 surrogate at {where}",
                (where, "is not valid Unicode (lone surrogate escape)"),
            )
        return doc
    except UnicodeDecodeError:
        msg = "is not UTF-8 text"
    except json.JSONDecodeError as exc:
        msg = f"is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        msg = "is nested too deeply to be a report"
    except _NotJson as exc:
        msg = f"is not JSON: {exc} is not a JSON number; send finite numbers"
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        msg = f"is not usable JSON: {exc}"
    raise problem(400, "bad-json", f"the body {msg}", ("body", msg))


def _parse_report(doc: Any) -> Any:
    """The report of a document, by the one decoder (agent.report); 422 naming every bad field."""
    try:
        return report_from_dict(doc)
    except ReportError as exc:
        extra: dict[str, Any] = {}
        version = doc.get("schema", SCHEMA) if isinstance(doc, dict) else SCHEMA
        what = f"a valid {version} document"
        if version not in SUPPORTED_SCHEMAS:
            what = f"of a schema this collector supports ({', '.join(SUPPORTED_SCHEMAS)})"
            extra["supported_schemas"] = list(SUPPORTED_SCHEMAS)
        raise problem(
            422,
            "invalid-report",
            f"the report is not {what} ({len(exc.errors)} problem(s)): {exc}",
            *[(e.field, e.message) for e in exc.errors[:100]],
            extra=extra,
        ) from None
    # No RecursionError or OverflowError here: the decoder descends no deeper
    # than the model and compares numbers without converting them first.


# A report's cost to its agent's bucket: one token more per this many bytes (decoded).
# A typical report (30 targets, ~60 KB) costs one token; a 4 MiB one costs 65, more
# than a full bucket: at the default rate one such report per half minute.
COST_UNIT_BYTES = 64 * 1024
# Bodies up to this size decode on the event loop (well under a millisecond); larger
# ones on the decoder threads, so one agent's big report does not stall every request.
INLINE_DECODE_BYTES = 64 * 1024


async def _offload(app: web.Application, size: int, fn: Any, *args: Any) -> Any:
    if size <= INLINE_DECODE_BYTES:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(app[DECODER], fn, *args)


def _decode_body(body: bytes) -> tuple[Any, Any]:
    """(document, report).  The fast decoder takes a valid current report straight from
    the bytes (document None: the body is the document); anything else is parsed and
    decoded by the reference path, which accepts it or says what is wrong (400, 422)."""
    report = report_codec.decode(body)
    if report is not None:
        return None, report
    doc = _parse_json(body)
    report = _parse_report(doc)
    if doc.get("schema", SCHEMA) != SCHEMA:
        # An older agent's document: what is stored and served is the current shape.
        doc = report_codec.to_builtins(report)
    return doc, report


def _checked(body: bytes, bearer: auth.Bearer, certificate: list[str] | None) -> ingest.Prepared:
    """The report decoded, checked against its token, certificate and caps, and prepared
    for the writer: pure work, in one hand-off to a decoder thread for a large body."""
    doc, report = _decode_body(body)
    agent = bearer.agent_id
    if report.agent.id != agent:
        raise problem(
            403,
            "forbidden",
            f"this token belongs to agent {agent!r}; it cannot report as {report.agent.id!r}",
            ("/agent/id", f"must be {agent!r}, the token's agent"),
        )
    _bind_certificate(certificate, agent)
    _bind_site(bearer, report)
    _within_caps(report)
    return ingest.prepare(doc, report, body)


def _within_caps(report: Any) -> None:
    """422 naming each field beyond what one report may ask of the collector (caps.py)."""
    over = caps.excesses(report)
    if over:
        raise problem(
            422,
            "report-too-costly",
            "the report asks more of the collector than one report may: "
            + "; ".join(f"{e.field} {e.message}" for e in over),
            *[(e.field, e.message) for e in over],
        )


# Seconds an overloaded collector asks agents to wait: about one batch of work.
OVERLOAD_RETRY_AFTER_S = 2
# The longest a request is held unread for an agent that ignores a Retry-After: long
# enough that its connections cost next to nothing, short enough that an agent that
# came back (restarted inside a long Retry-After) retries after a short pause.
HOLD_MAX_S = 5.0


async def post_report(request: web.Request) -> web.Response:
    app = request.app
    instruments = app[INSTRUMENTS]
    started = time.perf_counter()
    try:
        address = request.remote or "unknown"
        failures = app[ADDRESS_LIMITER]
        bearer = _authenticate_agent(request, failures, address)
        agent = bearer.agent_id
        # The agent's own limits come before the admission gate: an agent past them
        # must not take the slots every other agent needs.
        refusal = _agent_refusal(app, agent)
        if refusal is not None:
            refused, window_s = refusal
            ignored_s = app[RETRY_AFTER_WATCH].refused(agent, window_s)
            if ignored_s > 0:
                return await _close_unread(request, ignored_s)
            raise refused
        try:
            report, outcome = await _admitted(request, bearer, failures, address)
        finally:
            app[AGENT_IN_FLIGHT].leave(agent)
    except Problem:
        instruments.reports.labels("rejected").inc()
        raise
    if outcome.status == "conflict":
        instruments.reports.labels("rejected").inc()
        raise problem(409, "seq-conflict", outcome.detail, ("/seq", outcome.detail))
    if outcome.alerts_changed:
        app[ALERT_SENDER].poke()
    if outcome.asymmetry_inputs_changed:
        app[EVALUATE_SOON].set()
    instruments.reports.labels(outcome.status).inc()
    instruments.ingest_seconds.observe(time.perf_counter() - started)
    return _json(
        {
            "id": report.id,
            "status": outcome.status,
            "applied": outcome.applied,
            "events": outcome.events,
            "flips": outcome.flips,
        },
        status=201 if outcome.status == "accepted" else 200,
    )


def _authenticate_agent(request: web.Request, failures: Any, address: str) -> auth.Bearer:
    # A valid token is checked first (one SHA-256 and a constant-time compare) and
    # always goes on to its own agent's bucket: a bad client behind a shared address
    # (a NAT, a proxy) cannot lock out the agents with valid tokens behind it.
    # Only failed attempts are limited per address.
    try:
        return _authenticate(request)
    except Problem:
        if (wait_s := failures.wait_s(address)) > 0:
            raise problem(
                429,
                "rate-limited",
                f"too many failed authentications from {address}; retry in {wait_s:.1f} s",
                retry_after_s=_whole_s(wait_s),
            ) from None
        failures.take(address)
        raise


def _agent_refusal(app: web.Application, agent: str) -> tuple[Problem, float] | None:
    """The agent's bucket and in-flight limit: None and one report in progress for the
    agent when it may send (the caller leaves AGENT_IN_FLIGHT), else the 429 and the
    Retry-After window it opens (0: none, see RetryAfterWatch)."""
    wait_s = app[LIMITER].take(agent)
    if wait_s > 0:
        retry_after_s = _whole_s(wait_s)
        return problem(
            429,
            "rate-limited",
            f"agent {agent} sends faster than the collector accepts; retry in {wait_s:.1f} s",
            retry_after_s=retry_after_s,
        ), float(retry_after_s)
    in_flight = app[AGENT_IN_FLIGHT]
    if not in_flight.admit(agent):
        return problem(
            429,
            "rate-limited",
            f"agent {agent} already has {in_flight.limit} reports in progress; send one at a time",
            ("body", "not read: too many in progress"),
            retry_after_s=1,
        ), 0.0
    return None


def _whole_s(wait_s: float) -> int:
    """A wait as Retry-After says it: whole seconds (rounded up), at least one."""
    return max(1, math.ceil(wait_s))


async def _close_unread(request: web.Request, ignored_s: float) -> web.Response:
    """Hold the request of an agent that ignores a Retry-After, unread, until that
    Retry-After ends (at most HOLD_MAX_S), then close its connection without an answer.

    An answer would make aiohttp read and discard the whole body first (so that the
    client sees it): the cost this avoids.  Closing at once would only turn the reading
    into reconnecting.  Beyond RetryAfterWatch.max_held held at once, close at once.
    """
    app = request.app
    watch = app[RETRY_AFTER_WATCH]
    if watch.hold():
        try:
            await asyncio.sleep(min(ignored_s, HOLD_MAX_S))
        finally:
            watch.release()
    app[INSTRUMENTS].closed_unread.inc()
    request.protocol.force_close()
    # Never sent: the transport is closed, so aiohttp neither writes it nor lingers.
    return web.Response(status=429)


async def _admitted(
    request: web.Request, bearer: auth.Bearer, failures: Any, address: str
) -> tuple[Any, ingest.Outcome]:
    """Through the admission gate (503 when the collector is at capacity), then stored."""
    gate = request.app[ADMISSION]
    if not gate.admit():
        request.app[LIMITER].give_back(bearer.agent_id)
        raise problem(
            503,
            "unavailable",
            f"the collector is at capacity ({gate.limit} reports in progress); "
            "the report was not read, retry later",
            ("body", "not read: collector at capacity"),
            retry_after_s=OVERLOAD_RETRY_AFTER_S,
        )
    try:
        return await _store_report(request, bearer, failures, address)
    finally:
        gate.leave()


async def _store_report(
    request: web.Request, bearer: auth.Bearer, failures: Any, address: str
) -> tuple[Any, ingest.Outcome]:
    """Read, decode, check and store one authenticated agent's report."""
    app = request.app
    agent = bearer.agent_id
    # The body in time: a client that trickles it holds an admission slot meanwhile.
    try:
        async with asyncio.timeout(app[CONFIG].ingest.body_read_timeout_s):
            body = await _read_body(request, app[CONFIG].server.body_limit_bytes)
    except TimeoutError:
        raise problem(
            408,
            "body-timeout",
            f"the body did not arrive within {app[CONFIG].ingest.body_read_timeout_s:g} s; "
            "the report was not read, retry",
            ("body", "arrived too slowly"),
            headers={"Connection": "close"},
        ) from None
    # What the body costs to decode and store is spent from the agent's bucket: a large
    # report delays the agent's next ones, so no agent takes more than its share.
    app[LIMITER].charge(agent, len(body) // COST_UNIT_BYTES)
    prepared = await _offload(app, len(body), _checked, body, bearer, _certificate_names(request))
    report = prepared.report
    store = app[STORE]
    try:
        outcome = await store.write(
            _apply_if_active,
            bearer,
            report.agent.site,
            report.agent.role,
            store.cache,
            prepared,
            app[CLOCK](),
            app[INGEST_SETTINGS],
        )
    except auth.Revoked:
        failures.take(address)
        raise _revoked() from None
    except auth.Mismatch as exc:
        raise _mismatch(exc, agent) from None
    except StoreError as exc:
        raise problem(
            503,
            "unavailable",
            f"the report could not be stored ({exc}); it was not acknowledged, retry later",
            retry_after_s=5,
        ) from None
    return report, outcome


# --------------------------------------------------------------------------- read API


def _time_param(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    bad = _bad_query(
        f"{name}={raw!r} is not a time",
        name,
        "must be RFC 3339 (2024-05-01T10:00:00Z) or Unix seconds",
    )
    if _UNIX_S.fullmatch(raw):
        value = float(raw)
        if not math.isfinite(value):  # 1e999
            raise bad
        return value
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise bad from None
    if dt.tzinfo is None:
        raise _bad_query(f"{name}={raw!r} has no time zone", name, "needs a time zone, e.g. Z")
    try:
        return dt.timestamp()
    except (OverflowError, ValueError):  # year 1 in a far time zone
        raise bad from None


# Plain decimal seconds only: float() would also take "nan", "inf", "1_0" and " 1 ".
_UNIX_S = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,9})?")


def _bad_query(detail: str, param: str, message: str) -> Problem:
    return problem(400, "bad-query", detail, (f"query/{param}", message))


def _filters(request: web.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = set(request.query) - set(allowed)
    if unknown:
        raise problem(
            400,
            "bad-query",
            f"unknown query parameter(s): {', '.join(sorted(unknown))}",
            *[(f"query/{k}", f"is not one of {', '.join(allowed)}") for k in sorted(unknown)],
        )
    return {k: request.query.get(k) for k in allowed}


def _limit(request: web.Request, default: int = 100, most: int = 1000) -> int:
    raw = request.query.get("limit", str(default))
    # ASCII digits only: str.isdigit() is true for "²", which int() refuses.
    if not re.fullmatch(r"[0-9]{1,7}", raw) or not 1 <= int(raw) <= most:
        raise _bad_query(
            f"limit={raw!r} is not between 1 and {most}",
            "limit",
            f"must be an integer from 1 to {most}",
        )
    return int(raw)


def _require_reader(request: web.Request) -> None:
    """The read API and /metrics carry host names, NAT and hop addresses and evidence:
    with [server] read_token_file set they need 'Authorization: Bearer <read token>'.
    An agent's token is not one: an agent cannot read the fleet."""
    expected = request.app[READ_TOKEN]
    if expected is None:
        return  # a loopback-only listener (config refuses any other without a token)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    presented = auth.digest(token.strip()) if scheme.lower() == "bearer" else b""
    if not hmac.compare_digest(presented.ljust(32, b"\0"), expected):
        raise _unauthorized(
            "reading needs the collector's read token ([server] read_token_file); "
            "send 'Authorization: Bearer <read token>'",
            "must carry the read token",
            'Bearer realm="erpath-read"',
        )


def _cursor(request: web.Request, size: int) -> tuple[Any, ...] | None:
    """The key a page starts after, from the opaque `cursor` the previous page gave."""
    raw = request.query.get("cursor")
    if raw is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(raw.encode("ascii") + b"=" * (-len(raw) % 4)))
        if isinstance(key, list) and len(key) == size and all(isinstance(k, str) for k in key):
            return tuple(key)
    except (ValueError, UnicodeError):
        pass
    raise _bad_cursor()


def _bad_cursor() -> Problem:
    return _bad_query(
        "cursor is not one this collector gave; start again without it",
        "cursor",
        "must be the next_cursor of a previous page",
    )


def _page(key: str, rows: list[dict[str, Any]], limit: int, last: Any) -> dict[str, Any]:
    """`limit` rows and the cursor of the next page (None on the last one); rows holds one
    row more than a page when there is a next one."""
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = None
    if more:
        cursor = base64.urlsafe_b64encode(json.dumps(last(rows[-1])).encode()).decode().rstrip("=")
    return {key: rows, "next_cursor": cursor}


async def get_agents(request: web.Request) -> web.Response:
    _require_reader(request)
    f = _filters(request, ("site", "agent", "role", "limit", "cursor"))
    limit, after = _limit(request, default=1000), _cursor(request, 1)
    rows = await request.app[STORE].read(queries.agents, f, limit + 1, after)
    return _json(_page("agents", rows, limit, lambda r: [r["agent"]]))


# Address families as a path's answer names them (`family`: 4 or 6), and its query and cursor.
FAMILIES = ("4", "6")


async def get_paths(request: web.Request) -> web.Response:
    _require_reader(request)
    f = _filters(request, ("site", "agent", "target", "family", "limit", "cursor"))
    if f["family"] is not None:
        if f["family"] not in FAMILIES:
            raise _bad_query(
                f"family={f['family']!r} is not an address family",
                "family",
                "must be 4 (IPv4) or 6 (IPv6)",
            )
        f["family"] = int(f["family"])
    limit, after = _limit(request, default=1000), _cursor(request, 3)
    if after is not None and after[2] not in FAMILIES:  # (agent, target, family)
        raise _bad_cursor()
    rows = await request.app[STORE].read(queries.paths, f, limit + 1, after)
    return _json(_page("paths", rows, limit, lambda r: [r["agent"], r["target"], str(r["family"])]))


EVENT_KINDS = (
    "route_flip",
    "path_deviation",
    "path_change",
    "asymmetry",
    "asymmetry_cleared",
    "agent_silent",
    "agent_recovered",
    "redundancy_lost",
    "redundancy_restored",
    "route_filter_excludes",
    "route_filter_cleared",
    "targets_refused",
    "path_expired",
    "agent_forgotten",
)


async def get_events(request: web.Request) -> web.Response:
    _require_reader(request)
    f = _filters(request, ("site", "agent", "target", "kind", "since", "until", "limit"))
    if f["kind"] is not None and f["kind"] not in EVENT_KINDS:
        raise _bad_query(
            f"kind={f['kind']!r} is not an event kind",
            "kind",
            f"must be one of {', '.join(EVENT_KINDS)}",
        )
    f["since_s"] = _time_param(request, "since")
    f["until_s"] = _time_param(request, "until")
    if f["since_s"] is not None and f["until_s"] is not None and f["since_s"] > f["until_s"]:
        raise _bad_query("since is after until", "until", "must not be before since")
    rows = await request.app[STORE].read(queries.events, f, _limit(request))
    return _json({"events": rows})


async def get_alerts(request: web.Request) -> web.Response:
    _require_reader(request)
    f = _filters(request, ("state", "limit", "cursor"))
    if f["state"] not in (None, "firing", "resolved"):
        raise _bad_query(f"state={f['state']!r}", "state", "must be firing or resolved")
    app = request.app
    limit, after = _limit(request, default=1000), _cursor(request, 1)
    rows = await app[STORE].read(
        queries.alerts, app[CLOCK](), app[CONFIG].alerts.recent_s, f["state"], limit + 1, after
    )
    receivers = [
        {
            "receiver": r.name,
            "kind": r.kind,
            "last_error": r.last_error,
            "retry_in_s": r.backoff_s or None,
        }
        for r in app[ALERT_SENDER].receivers
    ]
    return _json(
        {**_page("alerts", rows, limit, lambda r: [r["fingerprint"]]), "receivers": receivers}
    )


# --------------------------------------------------------------------------- operations


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


def _ping(conn: Any) -> int:
    return conn.execute("SELECT 1").fetchone()[0]


async def readyz(request: web.Request) -> web.Response:
    """Ready while the database answers.  `leader` says whether this replica evaluates and
    delivers alerts; readiness does not depend on it: every replica takes reports."""
    store = request.app[STORE]
    if not store.writer_alive:
        raise problem(503, "unavailable", "the store is not open")
    try:
        await asyncio.wait_for(store.read(_ping), 5)
    except Exception as exc:
        raise problem(503, "unavailable", f"the store does not answer ({exc})") from None
    return _json({"status": "ready", "leader": request.app[LEADERSHIP].leading})


async def metrics(request: web.Request) -> web.Response:
    _require_reader(request)
    app = request.app
    scope = request.query.get("scope", "all")
    if scope not in exposition.SCOPES:
        raise _bad_query(f"scope={scope!r}", "scope", "must be all, state or process")
    body = await app[STORE].offload(exposition.render, app[REGISTRY], app[STORE_COLLECTOR], scope)
    return web.Response(body=body, headers={"Content-Type": EXPOSITION_TYPE})


def openapi_document() -> bytes:
    return resources.files("collector").joinpath("openapi.json").read_bytes()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi_document(), content_type="application/json")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post(f"{API}/reports", post_report)
    r.add_get(f"{API}/agents", get_agents)
    r.add_get(f"{API}/paths", get_paths)
    r.add_get(f"{API}/events", get_events)
    r.add_get(f"{API}/alerts", get_alerts)
    r.add_get(f"{API}/openapi.json", openapi)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
