"""RFC 9457 problem details: the one shape of every error the API returns."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://erpath.dev/problems/"


class Problem(Exception):
    """Raise from a handler; the error middleware renders it."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str = "",
        *,
        errors: Iterable[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = [dict(e) for e in errors]
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


# The title of each status a handler answers with, as the API documents them (413 and
# 422 by these names whatever the Python or aiohttp version calls them).
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


def problem(
    status: int,
    slug: str,
    detail: str,
    *errors: tuple[str, str],
    retry_after_s: int | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Problem:
    """A handler's problem: titled by its status, each error a (field, message) pair,
    `retry_after_s` sent as the Retry-After header."""
    if retry_after_s is not None:
        headers = {**(headers or {}), "Retry-After": str(retry_after_s)}
    return Problem(
        status,
        slug,
        TITLES[status],
        detail,
        errors=[{"field": field, "message": message} for field, message in errors],
        headers=headers,
        extra=extra,
    )


def response(problem: Problem, instance: str) -> web.Response:
    body: dict[str, Any] = {
        "type": TYPE_BASE + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail or problem.title,
        "instance": instance,
        "errors": problem.errors,
        **problem.extra,
    }
    return web.Response(
        status=problem.status,
        body=json.dumps(body).encode(),
        content_type=CONTENT_TYPE,
        headers=problem.headers,
    )
