"""Reports from JSON bytes, and API bodies to JSON bytes, at the collector's speed (msgspec).

`decode(body)` turns the bytes of an erpath.report/2 document straight into
the model of `agent.report`, or returns None.  It makes every check the
reference decoder (`report_from_dict`) makes: unknown fields, required
fields, null only where the model allows it, enums, non-negative 64-bit
integers, finite non-negative numbers, string and array lengths, and the
address, prefix, UUID and RFC 3339 patterns (the same `PATTERNS`), then the
real-date check.  It is a subset: whatever it refuses (bad input, and the
few valid documents it does not take — `7.0` as the integer 7, reports of
erpath.report/1) goes to `report_from_dict`, which accepts it or names every
bad field.  So a report has one decoder's answer, and the slow path runs
only to describe an error (tests/agent/test_report_decoder.py checks both
against jsonschema).

The msgspec types are generated from the dataclasses when this module is
imported — names, JSON names, types, defaults, formats and bounds all come
from `agent.report` — so there is no second model to keep in step.  msgspec
validates into them, then converts them into the dataclasses (both in C).

Only the collector imports this module: msgspec costs the agent's start-up
about 16 ms it does not need.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any, Literal

import msgspec

from agent import report as model

_JSON = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


def _type(tp: Any, fmt: str | None, structs: dict[type, Any]) -> Any:
    """The msgspec type that accepts what the reference decoder accepts for `tp` (or less)."""
    if model._is_union(tp):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type(inner, fmt, structs) | None
    origin = typing.get_origin(tp)
    if origin is Literal:
        return tp
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        return Annotated[
            tuple[_type(inner, fmt, structs), ...], msgspec.Meta(max_length=model.MAX_ITEMS)
        ]
    if dataclasses.is_dataclass(tp):
        return _struct(tp, structs)
    if tp is bool:
        return bool
    if tp is int:
        return Annotated[int, msgspec.Meta(ge=0, le=model.MAX_INT)]
    if tp is float:
        return Annotated[float, msgspec.Meta(ge=0, le=model.MAX_FLOAT)]
    if tp is str:
        # msgspec searches (re.search) with the pattern: PATTERNS are anchored at both ends.
        pattern = model.PATTERNS[fmt] if fmt is not None else None
        return Annotated[str, msgspec.Meta(max_length=model.MAX_STR, pattern=pattern)]
    raise TypeError(f"report model has an unsupported type {tp!r}")  # a bug


def _struct(cls: type, structs: dict[type, Any]) -> Any:
    if cls in structs:
        return structs[cls]
    hints = model._hints(cls)
    fields: list[tuple[Any, ...]] = []
    for f in dataclasses.fields(cls):
        tp = _type(hints[f.name], f.metadata.get("format"), structs)
        if cls is model.Report and f.name == "schema":
            tp = Literal[model.SCHEMA]  # older versions take the reference decoder's upgrade
        if model._required(f):
            fields.append((f.name, tp))
        else:
            default = f.default
            if dataclasses.is_dataclass(default):  # e.g. Report.site = SiteFacts()
                default = msgspec.convert(model.to_dict(default), tp)
            fields.append((f.name, tp, default))
    struct = msgspec.defstruct(
        f"{cls.__name__}Json",
        fields,
        kw_only=True,
        forbid_unknown_fields=True,
        rename={f.name: model._json_name(f) for f in dataclasses.fields(cls)},
        frozen=True,
        gc=False,  # trees of immutable values: no cycles to collect
    )
    structs[cls] = struct
    return struct


_STRUCTS: dict[type, Any] = {}
_REPORT_JSON = _struct(model.Report, _STRUCTS)
_REPORT_DECODER = msgspec.json.Decoder(_REPORT_JSON)
# Fields checked after decoding (msgspec has no hook for them): the real date.
_DATE_TIME_FIELDS = tuple(
    f.name for f in dataclasses.fields(model.Report) if f.metadata.get("format") == "date-time"
)
if any(
    f.metadata.get("format") == "date-time"
    for cls in _STRUCTS
    if cls is not model.Report
    for f in dataclasses.fields(cls)
):
    raise TypeError("a date-time field below the report's top level needs its real-date check")


def decode(body: bytes) -> model.Report | None:
    """The report in `body`, or None where the reference decoder must decide (see above)."""
    try:
        checked = _REPORT_DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    for name in _DATE_TIME_FIELDS:
        if not model._CHECKS["date-time"](getattr(checked, name)):
            return None
    return msgspec.convert(checked, model.Report, from_attributes=True)


def parse(body: bytes) -> Any:
    """A JSON document as plain data (dicts, lists …); msgspec.DecodeError if it is not JSON."""
    return _JSON.decode(body)


def to_builtins(report: model.Report) -> dict[str, Any]:
    """The report as JSON-ready data in the current shape (what `to_dict` gives), quickly."""
    checked = msgspec.convert(report, _REPORT_JSON, from_attributes=True)
    return _JSON.decode(_ENCODER.encode(checked))  # arrays as lists, as to_dict gives them


def encode(data: Any) -> bytes:
    """JSON bytes of API data (dicts, lists, strings, numbers, None)."""
    return _ENCODER.encode(data)
