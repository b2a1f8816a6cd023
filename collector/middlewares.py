"""The error middleware: every failure leaves as RFC 9457 problem+json."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from collector.problems import CONTENT_TYPE, Problem, response

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "invalid-report",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as p:
        return response(p, request.path)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == CONTENT_TYPE:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return response(
            Problem(
                exc.status,
                _SLUGS.get(exc.status, "error"),
                exc.reason,
                detail or exc.reason,
                headers=headers,
            ),
            request.path,
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        # %r: the path is the client's text; repr escapes newlines and control characters.
        log.exception("unhandled error on %s %r", request.method, request.path)
        return response(
            Problem(
                500,
                "internal-error",
                "Internal Server Error",
                "the collector failed on this request; nothing was stored; see its log",
            ),
            request.path,
        )
