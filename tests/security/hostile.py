"""Hostile ingest input: hypothesis strategies over the report document and its bytes.

A valid report is serialised with one placeholder, which is then replaced by
raw JSON text: that way a value can be something Python's json cannot build
(NaN, 1e999, 5,000 nested arrays, a 5,000-digit integer, a lone surrogate).
"""

from __future__ import annotations

import gzip
import itertools
import json
import uuid
import zlib
from typing import Any

from hypothesis import strategies as st

from tests.collector.reports import er, inet, report, result

AGENT = "fz-1"
HOLE = "__HOSTILE_VALUE__"
_seqs = itertools.count(1)


# Strategies must not depend on outside state (hypothesis replays them), so a
# generated document carries these two markers; `fresh` swaps in a new id and seq.
ID_MARK, SEQ_MARK = "00000000-0000-4000-8000-00000000f022", 987654321


def base_report(fresh_ids: bool = True) -> dict[str, Any]:
    """A valid report with every section filled."""
    doc = report(
        AGENT,
        SEQ_MARK,
        [
            result("api.powerapps.com", er()),
            result("make.powerapps.com", inet(), address="198.18.2.10"),
        ],
        report_id=ID_MARK,
    )
    # Through JSON: a deep copy (the site facts are a shared module constant we mutate).
    text = json.dumps(doc).encode()
    return json.loads(fresh(text) if fresh_ids else text)


def fresh(body: bytes) -> bytes:
    """The body with a new report id and the next seq, so it is not a replay."""
    return body.replace(ID_MARK.encode(), str(uuid.uuid4()).encode(), 1).replace(
        str(SEQ_MARK).encode(), str(next(_seqs)).encode(), 1
    )


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path inside a document (the root excluded)."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out.extend(paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((*prefix, i))
            out.extend(paths(v, (*prefix, i)))
    return out


_raw_fragments = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "-1e999",
        "-0",
        "-1",
        "-0.001",
        "1e-400",
        "9" * 5000,  # more digits than Python converts (ValueError)
        "18446744073709551616",
        "-9223372036854775809",
        '"\\ud800"',
        '"\\udfff\\ud800"',
        '"\\u0000"',
        '"a\\u0000b"',  # lone surrogates, NUL
        '"' + "x" * 1025 + '"',
        '"' + "\\u00e9" * 70_000 + '"',
        "[" * 5000 + "]" * 5000,
        '{"a":' * 3000 + "1" + "}" * 3000,
        "[" + ",".join(["1"] * 5000) + "]",
        "[" + ",".join(['"x"'] * 2000) + "]",
        '"999.1.1.1"',
        '"::g"',
        '"fe80::1%eth0"',
        '"198.18.1.10/24"',
        '"localhost"',
        '" 198.18.1.10"',
        '"2024-13-45T99:99:99Z"',
        '"not-a-uuid"',
        '""',
        "true",
        "null",
        "{}",
        "[]",
    ]
)

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=12,
)

hostile_value = st.one_of(
    _raw_fragments,
    _json_values.map(json.dumps),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False).map(
        repr
    ),  # negative durations
    st.text(min_size=1, max_size=30).map(json.dumps),
)


@st.composite
def mutated_report(draw: st.DrawFn) -> bytes:
    """A valid report with 1-3 mutations: a value replaced, a key dropped, or an extra key."""
    doc = base_report(fresh_ids=False)
    raw_values: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        candidates = paths(doc)
        path = draw(st.sampled_from(candidates))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        how = draw(st.sampled_from(["replace", "replace", "delete", "extra"]))
        last = path[-1]
        if how == "delete" and isinstance(parent, dict):
            del parent[last]
        elif how == "extra" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(_json_values)
        else:
            parent[last] = f"{HOLE}{len(raw_values)}"
            raw_values.append(draw(hostile_value))
    text = json.dumps(doc)
    for i, raw in enumerate(raw_values):
        text = text.replace(json.dumps(f"{HOLE}{i}"), raw, 1)
    return text.encode("utf-8", "surrogatepass")


def _corrupt_utf8(body: bytes, at: int) -> bytes:
    i = at % len(body)
    return body[:i] + b"\xff\xfe\xc0" + body[i:]


@st.composite
def hostile_body(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """Bytes and content headers: invalid UTF-8, truncation, gzip that lies, junk."""
    valid = json.dumps(base_report(fresh_ids=False)).encode()
    kind = draw(
        st.sampled_from(
            [
                "junk",
                "utf8",
                "truncated",
                "gzip",
                "gzip-truncated",
                "gzip-junk",
                "gzip-twice",
                "headers",
            ]
        )
    )
    headers = {"Content-Type": "application/json"}
    if kind == "junk":
        body = draw(st.binary(max_size=2000))
    elif kind == "utf8":
        body = _corrupt_utf8(valid, draw(st.integers(0, 10**6)))
    elif kind == "truncated":
        body = valid[: draw(st.integers(0, len(valid) - 1))]
    elif kind.startswith("gzip"):
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(valid, mtime=0)
        if kind == "gzip-truncated":
            body = body[: draw(st.integers(0, len(body) - 1))]
        elif kind == "gzip-junk":
            body = draw(st.binary(max_size=500))
        elif kind == "gzip-twice":
            body = gzip.compress(body)
    else:
        body = valid
        headers = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "Content-Type": st.sampled_from(
                        [
                            "text/plain",
                            "application/json; charset=latin-1",
                            "",
                            "*/*",
                            "application/x-www-form-urlencoded",
                            "multipart/form-data",
                        ]
                    ),
                    "Content-Encoding": st.sampled_from(
                        [
                            "br",
                            "deflate",
                            "gzip, gzip",
                            "identity",
                            "GZIP",
                            "x-gzip",
                            "compress",
                            "",
                        ]
                    ),
                },
            )
        )
    return body, headers


# Header values as raw bytes (UTF-8 and all): an HTTP client would refuse to encode some.
hostile_authorization = st.one_of(
    st.text(max_size=120)
    .map(lambda s: s.encode())
    .filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.binary(max_size=80).filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.sampled_from(
        [
            "Bearer",
            "Bearer ",
            "Basic Zm9vOmJhcg==",
            "bearer erp_0000000000000000_" + "A" * 43,
            "Bearer erp_" + "f" * 16 + "_" + "x" * 43,
            "Bearer " + "A" * 8000,
            "Bearer erp_../../etc/passwd",
            "Bearer ' OR 1=1 --",
        ]
    ).map(str.encode),
)


def gzip_bomb(expanded_bytes: int) -> bytes:
    """A gzip stream of zeros that expands to `expanded_bytes` (about 1000:1)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    parts = [z.compress(chunk) for _ in range(expanded_bytes >> 20)]
    parts.append(z.flush())
    return b"".join(parts)
