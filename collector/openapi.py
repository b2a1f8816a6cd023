"""The OpenAPI 3.1 document of the collector API (committed as collector/openapi.json).

The report body schema is the report model's own JSON Schema, so the two can
never drift.  Regenerate with `python -m collector.openapi`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.report import SUPPORTED_SCHEMAS, json_schema
from collector.routes import EVENT_KINDS

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM}},
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _q(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _list(key: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": item}},
    }


def _paged(key: str, item: dict[str, Any]) -> dict[str, Any]:
    out = _list(key, item)
    out["required"] = [key, "next_cursor"]
    out["properties"]["next_cursor"] = {
        "type": ["string", "null"],
        "description": "pass as `cursor` for the next page; null on the last one",
    }
    return out


PAGE = [
    _q("limit", "at most this many (1-1000, default 1000)", type="integer"),
    _q("cursor", "next_cursor of the previous page"),
]
UNAUTHORIZED_READ = _problem("read_token_file is set and the request lacks the read token")


BAD_QUERY = _problem("a query parameter is unknown or malformed")


def document() -> dict[str, Any]:
    report = json_schema()
    defs = report.pop("$defs")
    for k in ("$schema", "$id"):
        report.pop(k, None)
    # JSON Schema refs point at #/$defs; inside OpenAPI they live under components.
    text = json.dumps({"Report": report, **defs}).replace('"#/$defs/', '"#/components/schemas/')
    schemas: dict[str, Any] = json.loads(text)
    obj = {"type": "object"}
    nullable_str = {"type": ["string", "null"]}
    schemas.update(
        {
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details; `errors` names every bad field.",
                "required": ["type", "title", "status", "detail", "errors"],
                "properties": {
                    "type": {"type": "string", "format": "uri"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["field", "message"],
                            "properties": {
                                "field": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                    "supported_schemas": {"type": "array", "items": {"type": "string"}},
                },
            },
            "IngestResult": {
                "type": "object",
                "required": ["id", "status", "applied"],
                "properties": {
                    "id": {"type": "string"},
                    "status": {"enum": ["accepted", "duplicate"]},
                    "applied": {
                        "type": "boolean",
                        "description": "false when the report is older than the agent's current state "
                        "(stored as history only)",
                    },
                    "events": {"type": "integer"},
                    "flips": {"type": "integer"},
                },
            },
            "Agent": {
                "type": "object",
                "properties": {
                    "agent": {"type": "string"},
                    "site": {"type": "string"},
                    "role": {"type": "string"},
                    "version": {"type": "string"},
                    "hostname": {"type": "string"},
                    "interval_s": {"type": ["number", "null"]},
                    "last_seq": {"type": "integer"},
                    "first_seen": {"type": "string", "format": "date-time"},
                    "last_seen": {"type": "string", "format": "date-time"},
                    "last_seen_s": {"type": "number"},
                    "silent": {"type": "boolean"},
                    "site_facts_conflict": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "agents of the site whose site facts differ from this one's",
                    },
                    "targets_refused": {
                        "type": "integer",
                        "description": "targets of the last report beyond [ingest] "
                        "max_targets_per_agent, not stored",
                    },
                    "circuits": {
                        "type": "array",
                        "description": "the agent's own site facts: each circuit's route filter",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "route_filter": nullable_str,
                                "route_filter_communities": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                },
                            },
                        },
                    },
                    "service_tags": {
                        "type": "object",
                        "description": "the service tags file the agent classifies with",
                        "properties": {
                            "change_number": {"type": ["integer", "null"]},
                            "installed": {"type": ["string", "null"], "format": "date-time"},
                            "age_s": {"type": ["number", "null"]},
                        },
                    },
                    "health": obj,
                },
            },
            "Path": {
                "type": "object",
                "properties": {
                    "agent": {"type": "string"},
                    "site": {"type": "string"},
                    "target": {"type": "string"},
                    "family": {
                        "enum": [4, 6],
                        "description": "the address family: a dual-stack target has a path "
                        "per family",
                    },
                    "role": {"type": "string"},
                    "path": {
                        "type": "string",
                        "description": "the path's identity: class/circuit or class/egress "
                        "(the link is in verdict.link, a property of the circuit)",
                        "examples": ["expressroute/ams-1", "internet/ams-inet"],
                    },
                    "verdict": obj,
                    "address": nullable_str,
                    "signature": {"type": "string"},
                    "since": {"type": "string", "format": "date-time"},
                    "last_seq": {"type": "integer"},
                    "last_report": {"type": "string", "format": "date-time"},
                    "connect_s": {"type": ["number", "null"]},
                    "dns_s": {"type": ["number", "null"]},
                    "hops": {"type": ["integer", "null"]},
                    "tcp_state": nullable_str,
                    "flips_total": {"type": "integer"},
                    "flip_origin": {
                        "type": ["string", "null"],
                        "description": "where a chain of flips still alerting started",
                    },
                    "pending": {
                        "type": ["object", "null"],
                        "description": "a different path seen in fewer reports than confirm a flip",
                    },
                },
            },
            "Event": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "at": {"type": "string", "format": "date-time"},
                    "kind": {"enum": list(EVENT_KINDS)},
                    "severity": {"enum": ["info", "warning", "critical"]},
                    "site": nullable_str,
                    "agent": nullable_str,
                    "target": nullable_str,
                    "circuit": nullable_str,
                    "driver": {"enum": ["routing", "dns", None]},
                    "summary": {"type": "string"},
                    "before": {"type": ["object", "null"]},
                    "after": {"type": ["object", "null"]},
                    "evidence": {"type": "array", "items": {"type": "string"}},
                },
            },
            "Alert": {
                "type": "object",
                "properties": {
                    "fingerprint": {"type": "string"},
                    "alertname": {"type": "string"},
                    "state": {"enum": ["firing", "resolved"]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                    "starts_at": {"type": "string", "format": "date-time"},
                    "ends_at": {"type": ["string", "null"], "format": "date-time"},
                    "version": {"type": "integer"},
                },
            },
        }
    )
    filters = [
        _q("site", "only this site"),
        _q("agent", "only this agent"),
        _q("target", "only this target"),
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "erpath collector API",
            "version": "1",
            "description": "Agents post reports ("
            + ", ".join(SUPPORTED_SCHEMAS)
            + "); operators read "
            "agents, current paths, events and alerts. Errors are application/problem+json (RFC 9457).",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "agentToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "per-agent token from `erpath-collector token add`",
                },
                "readToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token in [server] read_token_file (reads open without "
                    "one only on a loopback listener)",
                },
            },
        },
        "paths": {
            "/api/v1/reports": {
                "post": {
                    "summary": "Ingest one report (acknowledged once durable; idempotent by report id)",
                    "security": [{"agentToken": []}],
                    "parameters": [
                        {
                            "name": "Content-Encoding",
                            "in": "header",
                            "required": False,
                            "schema": {"enum": ["gzip", "identity"]},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Report"}}
                        },
                    },
                    "responses": {
                        "201": _ok("stored", {"$ref": "#/components/schemas/IngestResult"}),
                        "200": _ok(
                            "a replay of a stored report: nothing stored twice",
                            {"$ref": "#/components/schemas/IngestResult"},
                        ),
                        "400": _problem("body is not JSON, not gzip, or nested too deeply"),
                        "401": _problem("missing, unknown or revoked token"),
                        "403": _problem(
                            "the token belongs to another agent, site or role (errors name /agent/id, "
                            "/agent/site or /agent/role), or a verified client certificate (CN/SAN) "
                            "names another agent"
                        ),
                        "408": _problem(
                            "the body did not arrive within ingest.body_read_timeout_s"
                        ),
                        "409": _problem(
                            "the agent already used this seq for another report (within its epoch)"
                        ),
                        "413": _problem(
                            "body larger than server.body_limit_bytes (after gzip decoding)"
                        ),
                        "415": _problem("Content-Type is not JSON or Content-Encoding is not gzip"),
                        "422": _problem(
                            "schema violations, one entry per field; unknown schema versions list "
                            "the supported ones; report-too-costly: beyond a cap (results, "
                            "circuits, internet edges, advertised prefixes, NAT addresses)"
                        ),
                        "429": _problem(
                            "per-agent rate limit (a report's size is charged to it), more than "
                            "ingest.max_in_flight_per_agent reports of the agent in progress, or too "
                            "many failed authentications from the address; see Retry-After"
                        ),
                        "503": _problem(
                            "the report could not be made durable (e.g. disk full), or the collector is at capacity; retry after Retry-After"
                        ),
                    },
                }
            },
            "/api/v1/agents": {
                "get": {
                    "summary": "Agents: last seen, version, site, role, silent",
                    "security": [{"readToken": []}],
                    "parameters": [
                        _q("site", "only this site"),
                        _q("agent", "only this agent"),
                        _q("role", "only this role"),
                        *PAGE,
                    ],
                    "responses": {
                        "200": _ok(
                            "agents", _paged("agents", {"$ref": "#/components/schemas/Agent"})
                        ),
                        "400": BAD_QUERY,
                        "401": UNAUTHORIZED_READ,
                    },
                }
            },
            "/api/v1/paths": {
                "get": {
                    "summary": "Current path per agent, target and address family: verdict, "
                    "evidence, since when",
                    "security": [{"readToken": []}],
                    "parameters": [
                        *filters,
                        _q(
                            "family",
                            "only this address family, as a path's `family` names it: "
                            "4 (IPv4) or 6 (IPv6)",
                            type="integer",
                            enum=[4, 6],
                        ),
                        *PAGE,
                    ],
                    "responses": {
                        "200": _ok("paths", _paged("paths", {"$ref": "#/components/schemas/Path"})),
                        "400": BAD_QUERY,
                        "401": UNAUTHORIZED_READ,
                    },
                }
            },
            "/api/v1/events": {
                "get": {
                    "summary": "Flips, path changes, asymmetry, circuit redundancy, route "
                    "filters, silent agents; newest first",
                    "security": [{"readToken": []}],
                    "parameters": [
                        *filters,
                        _q("kind", "only this event kind"),
                        _q("since", "RFC 3339 time or Unix seconds (inclusive)"),
                        _q("until", "RFC 3339 time or Unix seconds (exclusive)"),
                        _q("limit", "at most this many (1-1000, default 100)", type="integer"),
                    ],
                    "responses": {
                        "200": _ok(
                            "events", _list("events", {"$ref": "#/components/schemas/Event"})
                        ),
                        "400": BAD_QUERY,
                        "401": UNAUTHORIZED_READ,
                    },
                }
            },
            "/api/v1/alerts": {
                "get": {
                    "summary": "Active alerts and recently resolved ones, with receiver status",
                    "security": [{"readToken": []}],
                    "parameters": [_q("state", "firing or resolved"), *PAGE],
                    "responses": {
                        "200": _ok(
                            "alerts", _paged("alerts", {"$ref": "#/components/schemas/Alert"})
                        ),
                        "400": BAD_QUERY,
                        "401": UNAUTHORIZED_READ,
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _ok("OpenAPI 3.1", obj)}}
            },
            "/healthz": {
                "get": {"summary": "The process is up", "responses": {"200": _ok("up", obj)}}
            },
            "/readyz": {
                "get": {
                    "summary": "The store answers (readiness does not depend on leading)",
                    "responses": {
                        "200": _ok(
                            "ready",
                            {
                                "type": "object",
                                "required": ["status", "leader"],
                                "properties": {
                                    "status": {"const": "ready"},
                                    "leader": {
                                        "type": "boolean",
                                        "description": "this replica evaluates and delivers"
                                        " alerts (always true on SQLite)",
                                    },
                                },
                            },
                        ),
                        "503": _problem("not ready"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus exposition",
                    "security": [{"readToken": []}],
                    "parameters": [
                        _q(
                            "scope",
                            "all (default); state: the series read from the database, the"
                            " same from every replica; process: this process's own",
                            enum=["all", "state", "process"],
                        )
                    ],
                    "responses": {
                        "400": _problem("unknown scope"),
                        "401": UNAUTHORIZED_READ,
                        "200": {
                            "description": "text format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                    },
                }
            },
        },
    }


def render() -> str:
    return json.dumps(document(), indent=1, sort_keys=False) + "\n"


if __name__ == "__main__":
    out = Path(__file__).with_name("openapi.json")
    out.write_text(render())
    print(f"wrote {out}")
