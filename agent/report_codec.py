"""Reports from JSON bytes, and API bodies to JSON bytes, at the collector's speed (msgspec).

`decode(body)` turns the bytes of an erpath.report/2 document straight into
the model of `agent.report`, or returns None.  It makes every check the
reference decoder (`report_from_dict`) makes: unknown fields, required
fields, null only where the model allows it, enums, non-negative 64-bit
integers, finite non-negative numbers, string and array lengths, the UUID
and RFC 3339 patterns (the same `PATTERNS`), then the real-date check, and the
reference decoder's own address and prefix checks (which remember the valid
addresses: a fleet's reports name the same routers).  It is a subset: whatever it refuses (bad input, and the
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
        return _type(model._bare(tp), fmt, structs) | None
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
        # Addresses and prefixes are checked after decoding (`_LATER`), not here.
        pattern = model.PATTERNS[fmt] if fmt is not None and fmt not in _LATER else None
        return Annotated[str, msgspec.Meta(max_length=model.MAX_STR, pattern=pattern)]
    raise TypeError(f"report model has an unsupported type {tp!r}")  # a bug


# Formats checked after decoding, by the reference decoder's own checks (`model._CHECKS`):
# a report holds hundreds of addresses, mostly the same routers report after report, and
# those checks remember the valid ones, where msgspec would run the pattern on each.
_LATER = ("ip", "prefix")


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


def _gather_source(cls: type) -> str:
    """Source of a function appending every value of a `_LATER` format in a decoded `cls`
    to the list of its format: straight-line loops over the model, generated like the
    types above (a generic walk costs more per object than the pattern it replaces)."""
    lines = [f"def gather(v0, {', '.join(_LATER)}):"]

    def has_later(c: type) -> bool:
        hints = model._hints(c)
        return any(
            f.metadata.get("format") in _LATER
            or (dataclasses.is_dataclass(_item(hints[f.name])) and has_later(_item(hints[f.name])))
            for f in dataclasses.fields(c)
        )

    def emit(c: type, var: str, depth: int) -> None:
        pad = "    " * depth
        hints = model._hints(c)
        for f in dataclasses.fields(c):
            tp, fmt = hints[f.name], f.metadata.get("format")
            optional = model._is_union(tp)
            inner = _item(tp)
            many = typing.get_origin(model._bare(tp)) is tuple
            if fmt in _LATER:
                if inner is not str:
                    raise TypeError(
                        f"a {fmt} field that is not text: {c.__name__}.{f.name}"
                    )  # a bug
                value = f"{var}.{f.name}"
                add = f"{fmt}.extend({value})" if many else f"{fmt}.append({value})"
                lines.append(f"{pad}if {value} is not None: {add}" if optional else pad + add)
            elif dataclasses.is_dataclass(inner) and has_later(inner):
                child = f"v{depth}"
                if many:
                    lines.append(f"{pad}for {child} in {var}.{f.name} or ():")
                else:
                    lines.append(f"{pad}{child} = {var}.{f.name}")
                    lines.append(f"{pad}if {child} is not None:")
                emit(inner, child, depth + 1)  # not empty: has_later

    emit(cls, "v0", 1)
    return "\n".join(lines) + "\n"


def _item(tp: Any) -> Any:
    """The type of one value of a field: the items' of a tuple, without `| None`."""
    tp = model._bare(tp)
    return typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else tp


_namespace: dict[str, Any] = {}
exec(_gather_source(model.Report), _namespace)  # noqa: S102 - source generated from the model above
_gather = _namespace["gather"]
_ADDRESS_CHECK = model._CHECKS["ip"]
_PREFIX_CHECK = model._CHECKS["prefix"]


def _later_checks_pass(checked: Any) -> bool:
    addresses: list[str] = []
    prefixes: list[str] = []
    _gather(checked, addresses, prefixes)
    # The addresses the reference check has already seen valid, in one step; the rest one by one.
    if not model._VALID_ADDRESSES.keys() >= set(addresses) and not all(
        map(_ADDRESS_CHECK, addresses)
    ):
        return False
    return all(map(_PREFIX_CHECK, prefixes))


def decode(body: bytes) -> model.Report | None:
    """The report in `body`, or None where the reference decoder must decide (see above)."""
    try:
        checked = _REPORT_DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    for name in _DATE_TIME_FIELDS:
        if not model._CHECKS["date-time"](getattr(checked, name)):
            return None
    if not _later_checks_pass(checked):
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
