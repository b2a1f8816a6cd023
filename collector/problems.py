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
