"""Reading a TOML config into frozen dataclasses, every key declared once.

A table is a frozen dataclass whose fields say how their value is read:
`port: int = setting(integer(1, 65535), 443)`.  `Reader` rejects unknown
tables and keys (with a did-you-mean), reads every value, and collects all
problems of a file into one `ConfigError`, one line each, naming the file,
the table, the key, the value as written and the fix.  The agent and the
collector both read their config with it, so it uses the standard library only.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

Parse = Callable[[Any], Any]
_NO_DEFAULT: Any = object()


class ConfigError(ValueError):
    """A configuration that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: Iterable[str]):
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class Invalid(ValueError):
    """One bad value; the message says what is wrong and how to fix it."""


# --------------------------------------------------------------------------- declaring tables


@dataclass(frozen=True, slots=True)
class Key:
    """How one key is read.  `required`: the example in "missing KEY; add KEY = EXAMPLE"."""

    parse: Parse
    required: str | None = None
    default: Any = _NO_DEFAULT  # only for records declared elsewhere (the report's); see `table`


def setting(
    parse: Parse,
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    required: str | None = None,
) -> Any:
    """A dataclass field that is a config key: how it is read, and its default."""
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"key": Key(parse, required)}
    )


@dataclass(frozen=True, slots=True)
class Table:
    """A TOML table: the record it becomes and its keys, in the order they are read."""

    record: type
    keys: Mapping[str, Key]

    def defaults(self) -> dict[str, Any]:
        return {k: key.default for k, key in self.keys.items() if key.default is not _NO_DEFAULT}


def table(record: type, **keys: Key) -> Table:
    """The `setting` fields of `record`; `keys` declares those of a record defined elsewhere."""
    declared = {
        f.name: f.metadata["key"] for f in dataclasses.fields(record) if "key" in f.metadata
    }
    return Table(record, {**declared, **keys})


@dataclass(frozen=True, slots=True)
class Array:
    """An array whose items are read one by one (so a bad item is named), none twice."""

    item: Parse
    if_empty: str | None = None  # the problem an empty array is, if it is one


def array(item: Parse, *, if_empty: str | None = None) -> Array:
    return Array(item, if_empty)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Read:
    """One table as read: its text, the values that were good, and whether all were."""

    table: Table
    where: str
    data: dict[str, Any]
    values: dict[str, Any]
    ok: bool

    def subject(self, key: str) -> str:
        return f"{self.where} {key} = {show(self.data[key])}"

    def record(self) -> Any:
        """The record, with defaults for keys not given (or not good)."""
        return self.table.record(**{**self.table.defaults(), **self.values})


class _Reported(Exception):
    """A value whose problems were already added."""


class Reader:
    """One TOML document: `section` and `items` read its tables; every problem is kept."""

    def __init__(
        self,
        source: str,
        doc: dict[str, Any],
        *,
        sections: Mapping[str, Table],
        arrays: Mapping[str, Table] | None = None,
        base_dir: Path | None = None,
    ):
        self.source, self.doc, self.base_dir = source, doc, base_dir
        self.sections, self.arrays = sections, arrays or {}
        self.problems: list[str] = []
        self._check_layout()

    def add(self, subject: str, message: str) -> None:
        self.problems.append(f"{self.source}: {subject}: {message}")

    def done(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)

    def section(self, name: str) -> Read:
        data = self.doc.get(name)
        if not isinstance(data, dict):  # absent (all defaults), or reported by _check_layout
            return Read(self.sections[name], f"[{name}]", {}, {}, data is None)
        return self._read(f"[{name}]", data, self.sections[name])

    def items(self, name: str) -> list[Read]:
        data = self.doc.get(name)
        if not isinstance(data, list) or not all(isinstance(v, dict) for v in data):
            return []
        out = []
        for i, item in enumerate(data, 1):
            label = f"[[{name}]] #{i}"
            if isinstance(item.get("name"), str) and item["name"]:
                label += f" ({item['name']})"
            out.append(self._read(label, item, self.arrays[name]))
        return out

    def _check_layout(self) -> None:
        known = [*self.sections, *self.arrays]
        for key, value in self.doc.items():
            is_list_of_tables = isinstance(value, list) and all(isinstance(v, dict) for v in value)
            if (key in self.sections and isinstance(value, dict)) or (
                key in self.arrays and is_list_of_tables
            ):
                continue
            owners = [f"[{s}]" for s, t in self.sections.items() if key in t.keys]
            owners += [f"[[{s}]]" for s, t in self.arrays.items() if key in t.keys]
            if owners and not isinstance(value, dict | list):
                self.add(key, f"keys belong in a table; put it under {' or '.join(owners)}")
            elif key in self.sections:
                self.add(
                    f"[{key}]",
                    f"must be a table; write [{key}] on a line of its own, then its keys",
                )
            elif key in self.arrays:
                self.add(
                    f"[{key}]",
                    f"must be an array of tables; write [[{key}]] before each {key}'s keys",
                )
            else:
                self.add(f"[{key}]", "unknown table; " + _hint(key, known, "[{}]", "tables"))

    def _read(self, where: str, data: dict[str, Any], table: Table) -> Read:
        for key in data:
            if key not in table.keys:
                self.add(f"{where} {key}", "unknown key; " + _hint(key, table.keys, '"{}"', "keys"))
        values: dict[str, Any] = {}
        ok = True
        for key, spec in table.keys.items():
            if key not in data:
                if spec.required is not None:
                    self.add(where, f"missing {key}; add {key} = {spec.required}")
                    ok = False
                continue
            try:
                values[key] = self._value(where, key, data[key], spec.parse)
            except _Reported:
                ok = False
        return Read(table, where, data, values, ok)

    def _value(self, where: str, key: str, value: Any, parse: Parse | Array) -> Any:
        if isinstance(parse, Array):
            return self._array(where, key, value, parse)
        try:
            out = parse(value)
        except Invalid as e:
            self.add(f"{where} {key} = {show(value)}", str(e))
            raise _Reported from None
        # Relative to the config file, not the working directory: systemd and
        # cron start services from "/".
        return self.base_dir / out if parse is path and self.base_dir is not None else out

    def _array(self, where: str, key: str, value: Any, spec: Array) -> tuple[Any, ...]:
        if not isinstance(value, list):
            self.add(
                f"{where} {key} = {show(value)}", f"must be an array, e.g. {key} = [{show(value)}]"
            )
            raise _Reported
        if not value and spec.if_empty:
            self.add(f"{where} {key} = []", spec.if_empty)
            raise _Reported
        out, ok = [], True
        for i, v in enumerate(value):
            try:
                out.append(spec.item(v))
            except Invalid as e:
                self.add(f"{where} {key}[{i}] = {show(v)}", str(e))
                ok = False
        if ok and len(set(out)) != len(out):
            dup = next(x for x in out if out.count(x) > 1)
            self.add(f"{where} {key} = {show(value)}", f"lists {show(dup)} twice; keep one")
            ok = False
        if not ok:
            raise _Reported
        return tuple(out)


def _hint(word: str, known: Iterable[str], form: str, noun: str) -> str:
    known = list(known)
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {form.format(close[0])}?"
    return f"remove it (known {noun}: {', '.join(known)})"


def did_you_mean(word: str, known: Iterable[str], synonyms: Mapping[str, str] | None = None) -> str:
    """'; did you mean "x"?' for a close enough choice, else ''.

    `synonyms` maps other people's words to ours where spelling misleads
    ("active-passive" is closer to "active-active" than to "active-standby")."""
    known = list(known)
    close = [k for k in known if k == word.lower()]  # choices are lower case
    close = close or [s for w, s in (synonyms or {}).items() if w == word.lower()]
    close = close or difflib.get_close_matches(word, known, n=1, cutoff=0.5)
    return f'; did you mean "{close[0]}"?' if close else ""


# --------------------------------------------------------------------------- files


def read_toml(path: str | os.PathLike[str], *, if_missing: str) -> dict[str, Any]:
    """The parsed file; `if_missing` is the problem a missing file is (what to do instead)."""
    source = os.fspath(path)
    try:
        raw = Path(source).read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{source}: {if_missing}"]) from None
    except OSError as e:
        raise ConfigError([f"{source}: cannot read: {e.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            [f"{source}: not UTF-8 (byte {e.start}); save the file as UTF-8"]
        ) from None
    return parse_toml(text, source)


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.match(r"^(.*) \(at (line \d+, column \d+|end of document)\)$", str(e))
        what, at = (m.group(1), f" at {m.group(2)}") if m else (str(e), "")
        raise ConfigError(
            [
                f"{source}: TOML syntax error{at}: {what}; fix the TOML there "
                f"(strings in double quotes, [table], [[array of tables]])"
            ]
        ) from None


# --------------------------------------------------------------------------- values


def show(value: Any) -> str:
    """A value as the user wrote it in TOML (shortened)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{...}"
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a string, not {_type_name(value)}; put it in double quotes")
    if not value.strip():
        raise Invalid("must not be empty")
    return value


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")


def identifier(value: Any) -> str:
    """An identifier people write: an agent, a site, a circuit, an edge."""
    value = string(value)
    if not _NAME.match(value):
        raise Invalid(
            "must start with a letter or digit and use only letters, digits and . _ - : @ / "
            "(at most 128 characters)"
        )
    return value


def one_of(*allowed: str, synonyms: Mapping[str, str] | None = None) -> Parse:
    def parse(value: Any) -> str:
        value = string(value)
        if value not in allowed:
            choices = ", ".join(f'"{a}"' for a in allowed)
            raise Invalid(f"must be one of {choices}{did_you_mean(value, allowed, synonyms)}")
        return value

    return parse


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false (no quotes), not {_type_name(value)}")
    return value


def integer(lo: int, hi: int) -> Parse:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be an integer (no quotes), not {_type_name(value)}")
        if not lo <= value <= hi:
            raise Invalid(f"must be from {lo} to {hi}")
        return value

    return parse


def number(lo: float, hi: float = math.inf, *, lo_open: bool = False, why: str = "") -> Parse:
    """A number of base units; `lo_open`: more than `lo` (a duration or size of 0 means nothing)."""

    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"must be a number (no quotes), not {_type_name(value)}")
        if value != value or (value <= lo if lo_open else value < lo):
            raise Invalid(f"must be {'more than' if lo_open else 'at least'} {lo:g}{why}")
        if value > hi:
            raise Invalid(f"must be at most {hi:g}")
        return float(value)

    return parse


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def ip_address(value: Any) -> str:
    value = string(value)
    if is_ip(value):
        return str(ipaddress.ip_address(value))
    if "/" in value:
        raise Invalid("is a prefix; write a single address, e.g. 192.0.2.10")
    raise Invalid("is not an IP address; write one such as 192.0.2.10 or 2001:db8::10")


def ip_prefix(value: Any) -> str:
    value = string(value)
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        pass
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Invalid("is not an IP prefix; write one such as 198.51.100.0/24") from None
    raise Invalid(f"has host bits set; write {net}")


def path(value: Any) -> Path:
    """A file or directory; the reader resolves it against the config file's directory."""
    return Path(string(value)).expanduser()


def http_url(example: str) -> Parse:
    def parse(value: Any) -> str:
        value = string(value)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(f"must be an http:// or https:// URL, e.g. {example}")
        return value

    return parse


# --------------------------------------------------------------------------- host:port


def split_host_port(text: str) -> tuple[str, int | None]:
    """'host', 'host:port', ':port', '[v6]', '[v6]:port' or a bare IPv6 address -> (host, port).

    The one place erpath splits host and port; raises Invalid with a user-facing reason.
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise Invalid("has '[' without ']'")
        if rest and not rest.startswith(":"):
            raise Invalid("has text after ']' that is not ':port'")
        return host, _port_number(rest[1:]) if rest else None
    if text.count(":") > 1:  # a bare IPv6 address carries no port
        return text, None
    host, sep, port = text.partition(":")
    return host, _port_number(port) if sep else None


def _port_number(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise Invalid(f"port {text!r} must be a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where a server listens: `host` "" means all addresses."""

    host: str
    port: int

    @property
    def bind_host(self) -> str:
        # "::" takes IPv4 too (Linux's default bindv6only=0), as Prometheus'
        # own ":9090" does; a host name binds its first address.
        return self.host or "::"


def listen_address(value: Any) -> ListenAddress:
    """'host:port', ':port' (all addresses) or '[v6]:port'; host an IP address or localhost."""
    value = string(value)
    example = '"127.0.0.1:9430" or ":9430" (all addresses)'
    try:
        host, port = split_host_port(value)
    except Invalid as e:
        raise Invalid(f"{e}; write host:port, e.g. {example}") from None
    if port is None:
        raise Invalid(f"needs a port; write host:port, e.g. {example}")
    if host and host != "localhost" and not is_ip(host):
        raise Invalid('host must be an IP address, "localhost" or empty (all addresses)')
    return ListenAddress(str(ipaddress.ip_address(host)) if is_ip(host) else host, port)


_HOST_NAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


def listen_host(value: Any) -> str:
    """The address (or host name) a server binds."""
    value = string(value)
    if not is_ip(value) and not _HOST_NAME.match(value):
        raise Invalid('is not an address; write e.g. "127.0.0.1", or "::" for all addresses')
    return value
