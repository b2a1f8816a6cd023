"""Collector configuration: one TOML file, validated at load.

Every section is a frozen dataclass whose fields declare the default once.
Loading rejects unknown keys and wrong types; every message names the file,
the key and the fix, so `erpath-collector serve` can exit 2 with it instead
of a traceback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A configuration that cannot run; `problems` are full sentences."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _doc(text: str, **kw: Any) -> Any:
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = _doc("address to listen on", default="127.0.0.1")
    port: int = _doc("TCP port to listen on", default=9470)
    body_limit_bytes: int = _doc(
        "largest report body, after gzip decoding", default=4 * 1024 * 1024
    )
    tls_cert_file: str = _doc("PEM certificate chain; enables TLS with tls_key_file", default="")
    tls_key_file: str = _doc("PEM private key of tls_cert_file", default="")
    client_ca_file: str = _doc(
        "PEM CA bundle; when set, client certificates are verified", default=""
    )
    client_cert_required: bool = _doc("refuse clients without a certificate", default=False)
    shutdown_timeout_s: float = _doc("grace for in-flight requests on shutdown", default=30.0)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str = _doc("SQLite database file", default="/var/lib/erpath/collector.db")
    journal_mode: str = _doc("SQLite journal mode: wal or delete", default="wal")
    observations_retention_days: float = _doc("keep observation rows this long", default=14.0)
    events_retention_days: float = _doc("keep events this long", default=90.0)
    traces_retention_days: float = _doc("keep traces of path changes this long", default=90.0)
    alerts_retention_days: float = _doc("keep resolved alerts this long", default=90.0)
    prune_interval_s: float = _doc("how often old rows are pruned", default=3600.0)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    rate_per_agent_per_s: float = _doc("sustained reports per second per agent", default=2.0)
    burst_per_agent: int = _doc("reports an agent may send at once (spool flush)", default=60)
    default_interval_s: float = _doc("agent interval when a report carries none", default=30.0)
    tokens_refresh_s: float = _doc("how often added or revoked tokens are picked up", default=2.0)
    failed_auth_per_address_per_s: float = _doc(
        "sustained failed authentications per client address; more gets 429", default=1.0
    )
    failed_auth_burst_per_address: int = _doc(
        "failed authentications a client address may make at once", default=30
    )
    max_in_flight: int = _doc(
        "reports in progress at once; more get 503 with Retry-After (overload)", default=64
    )


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    flip_confirm_reports: int = _doc("consecutive reports that confirm a route flip", default=2)
    silent_after_intervals: float = _doc(
        "agent intervals without a report before silent", default=3.0
    )
    evaluate_interval_s: float = _doc(
        "how often silence, hold times and asymmetry are evaluated", default=5.0
    )


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    alertmanager_urls: tuple[str, ...] = _doc("Alertmanager base URLs (API v2)", default=())
    webhook_urls: tuple[str, ...] = _doc(
        "generic JSON webhooks that get the same alerts", default=()
    )
    resend_interval_s: float = _doc(
        "re-send firing alerts this often (below resolve_timeout)", default=60.0
    )
    flip_hold_s: float = _doc("a route flip alert resolves after this long", default=3600.0)
    timeout_s: float = _doc("HTTP timeout per delivery", default=10.0)
    backoff_initial_s: float = _doc("first retry delay after a failed delivery", default=1.0)
    backoff_max_s: float = _doc("longest retry delay", default=60.0)
    recent_s: float = _doc(
        "resolved alerts listed by GET /api/v1/alerts for this long", default=86400.0
    )
    runbook_base_url: str = _doc(
        "runbook_url = this + '/' + alertname", default="https://erpath.dev/runbooks"
    )
    dashboard_base_url: str = _doc(
        "dashboard_url = this + '?var-site=...'", default="http://localhost:3000/d/erpath"
    )


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    per_site_aggregates: bool = _doc(
        "export per-site aggregates instead of per-agent series", default=False
    )


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    ingest: IngestConfig = IngestConfig()
    detection: DetectionConfig = DetectionConfig()
    alerts: AlertsConfig = AlertsConfig()
    metrics: MetricsConfig = MetricsConfig()
    source: str = field(default="<defaults>", metadata={"internal": True})


_PLURAL = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _coerce(tp: Any, value: Any) -> Any:
    """Return the value as `tp`, or raise TypeError with what was expected."""
    if typing.get_origin(tp) is tuple:
        (inner, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise TypeError(f"a list of {_PLURAL[inner]}")
        return tuple(_coerce(inner, v) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError("a string")
        return value
    raise TypeError(f"unsupported type {tp!r}")  # a bug in this module


def _load_section(cls: type, table: Any, where: str, src: str, problems: list[str]) -> Any:
    if not isinstance(table, dict):
        problems.append(f"{src}: [{where}] must be a table; write it as a [{where}] section")
        return cls()
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            problems.append(
                f"{src}: [{where}] {key}: unknown key; remove it "
                f"(known keys: {', '.join(sorted(known))})"
            )
            continue
        try:
            kwargs[key] = _coerce(hints[key], value)
        except TypeError as exc:
            problems.append(f"{src}: [{where}] {key}: must be {exc}, not {value!r}")
    return cls(**kwargs)


def _check_url(url: str, key: str, src: str, problems: list[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append(
            f"{src}: [alerts] {key}: {url!r} is not an http(s) URL; write e.g. 'http://127.0.0.1:9093'"
        )


def _validate(cfg: Config, src: str, problems: list[str]) -> None:
    s = cfg.server
    if not 0 < s.port < 65536:
        problems.append(f"{src}: [server] port: {s.port} is not a TCP port; use 1-65535")
    try:
        ipaddress.ip_address(s.host)
    except ValueError:
        if not s.host or " " in s.host:
            problems.append(
                f"{src}: [server] host: {s.host!r} is not an address; use e.g. '127.0.0.1' or '::'"
            )
    if s.body_limit_bytes < 1024:
        problems.append(
            f"{src}: [server] body_limit_bytes: {s.body_limit_bytes} is too small; use at least 1024"
        )
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        problems.append(
            f"{src}: [server] tls_cert_file and tls_key_file: set both (TLS) or neither (plain HTTP)"
        )
    for key in ("tls_cert_file", "tls_key_file", "client_ca_file"):
        path = getattr(s, key)
        if path and not Path(path).is_file():
            problems.append(
                f"{src}: [server] {key}: {path!r} does not exist; give the path of a PEM file"
            )
    if (s.client_ca_file or s.client_cert_required) and not s.tls_cert_file:
        problems.append(
            f"{src}: [server] client_ca_file: client certificates need TLS; set tls_cert_file and tls_key_file"
        )
    if s.client_cert_required and not s.client_ca_file:
        problems.append(
            f"{src}: [server] client_cert_required: needs client_ca_file to verify against"
        )
    if cfg.store.journal_mode not in ("wal", "delete"):
        problems.append(
            f"{src}: [store] journal_mode: {cfg.store.journal_mode!r}; use 'wal' or 'delete'"
        )
    if not cfg.store.path:
        problems.append(
            f"{src}: [store] path: empty; give the SQLite file, e.g. '/var/lib/erpath/collector.db'"
        )
    positive = [
        ("server", "shutdown_timeout_s"),
        ("store", "observations_retention_days"),
        ("store", "events_retention_days"),
        ("store", "traces_retention_days"),
        ("store", "alerts_retention_days"),
        ("store", "prune_interval_s"),
        ("ingest", "rate_per_agent_per_s"),
        ("ingest", "burst_per_agent"),
        ("ingest", "default_interval_s"),
        ("ingest", "tokens_refresh_s"),
        ("ingest", "failed_auth_per_address_per_s"),
        ("ingest", "failed_auth_burst_per_address"),
        ("ingest", "max_in_flight"),
        ("detection", "flip_confirm_reports"),
        ("detection", "silent_after_intervals"),
        ("detection", "evaluate_interval_s"),
        ("alerts", "resend_interval_s"),
        ("alerts", "flip_hold_s"),
        ("alerts", "timeout_s"),
        ("alerts", "backoff_initial_s"),
        ("alerts", "backoff_max_s"),
        ("alerts", "recent_s"),
    ]
    for section, key in positive:
        value = getattr(getattr(cfg, section), key)
        if value <= 0:
            problems.append(f"{src}: [{section}] {key}: {value} must be greater than 0")
    if cfg.alerts.backoff_max_s < cfg.alerts.backoff_initial_s:
        problems.append(f"{src}: [alerts] backoff_max_s: must not be below backoff_initial_s")
    for url in cfg.alerts.alertmanager_urls:
        _check_url(url, "alertmanager_urls", src, problems)
    for url in cfg.alerts.webhook_urls:
        _check_url(url, "webhook_urls", src, problems)


def from_dict(doc: dict[str, Any], source: str = "<dict>") -> Config:
    """Build and validate a Config from a parsed TOML document."""
    problems: list[str] = []
    sections = {f.name: f for f in dataclasses.fields(Config) if not f.metadata.get("internal")}
    hints = typing.get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    for name, value in doc.items():
        if name not in sections:
            problems.append(
                f"{source}: [{name}]: unknown section; remove it "
                f"(known sections: {', '.join(sections)})"
            )
            continue
        kwargs[name] = _load_section(hints[name], value, name, source, problems)
    cfg = Config(**kwargs, source=source)
    if not problems:
        _validate(cfg, source, problems)
    if problems:
        raise ConfigError(problems)
    return cfg


def load(path: str | Path) -> Config:
    """Read and validate a TOML file; raise ConfigError naming file, key and fix."""
    src = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            [f"{src}: cannot read ({exc.strerror}); check the --config path"]
        ) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{src}: not UTF-8 text; save the file as UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{src}: not valid TOML ({exc}); fix the syntax there"]) from None
    return from_dict(doc, src)


def documented_keys() -> dict[str, list[tuple[str, Any, str]]]:
    """(key, default, doc) per section: used to keep docs/collector.md honest."""
    out: dict[str, list[tuple[str, Any, str]]] = {}
    hints = typing.get_type_hints(Config)
    for sec in dataclasses.fields(Config):
        if sec.metadata.get("internal"):
            continue
        out[sec.name] = [
            (f.name, f.default, f.metadata.get("doc", ""))
            for f in dataclasses.fields(hints[sec.name])
        ]
    return out
