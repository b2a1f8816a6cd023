"""Collector configuration: one TOML file, validated at load.

Every section is a frozen dataclass whose fields declare each key once: how
it is read and its default (`agent.settings`, the reader the agent uses
too); docs/collector.md says what each means.  Loading rejects unknown
tables and keys and bad values; every message names the file, the key, the
value and the fix, so `erpath-collector serve` can exit 2 with it instead
of a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.settings import ConfigError as ConfigError  # raised here, caught by the CLI
from agent.settings import (
    Invalid,
    Reader,
    array,
    boolean,
    http_url,
    integer,
    listen_host,
    number,
    one_of,
    read_toml,
    setting,
    string,
    table,
)

_SECONDS = _DAYS = _RATE = number(0, lo_open=True)
_COUNT = integer(1, 1_000_000)
_RUNBOOKS = "https://erpath.dev/runbooks"
_DASHBOARD = "http://localhost:3000/d/erpath"


def _pem_file(value: Any) -> str:
    value = string(value)
    if not Path(value).is_file():
        raise Invalid("no such file; give the path of a PEM file")
    return value


# A read token shorter than this is guessable; `openssl rand -hex 32` gives 64.
READ_TOKEN_MIN_CHARS = 32


def _read_token_file(value: Any) -> str:
    value = string(value)
    path = Path(value)
    try:
        token = path.read_text().strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise Invalid(f"cannot read ({exc.strerror}); give a file holding the read token") from None
    if len(token) < READ_TOKEN_MIN_CHARS or len(token.split()) != 1:
        raise Invalid(
            f"must hold one token of at least {READ_TOKEN_MIN_CHARS} characters;"
            f" write one with 'openssl rand -hex 32 > {value}'"
        )
    if mode & 0o007:
        raise Invalid(f"is readable by every user; chmod o-rwx {value}")
    return value


def _url_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.password is not None or "password=" in parts.query


def _postgresql_url(value: Any) -> str:
    value = string(value)
    example = "postgresql://erpath@db.example.net:5432/erpath"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise Invalid(f"is not a URL ({exc}); write it as {example!r}") from None
    if _url_password(value):
        return value  # refused by from_dict, which does not echo the password
    if parts.scheme not in ("postgresql", "postgres"):
        raise Invalid(f"must start with postgresql://, e.g. {example!r}")
    if not parts.hostname or not parts.username or len(parts.path) < 2:
        raise Invalid(f"needs a user, a host and a database, e.g. {example!r}")
    return value


def _passfile(value: Any) -> str:
    value = string(value)
    path = Path(value)
    try:
        mode = path.stat().st_mode
        path.read_bytes()
    except OSError as exc:
        raise Invalid(
            f"cannot read ({exc.strerror}); give a libpq passfile"
            " (host:port:database:user:password, mode 0600)"
        ) from None
    if mode & 0o077:
        raise Invalid(f"is readable by other users (libpq ignores it then); chmod 600 {value}")
    return value


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = setting(listen_host, "127.0.0.1")
    port: int = setting(integer(1, 65535), 9470)
    body_limit_bytes: int = setting(integer(1024, 1 << 30), 4 * 1024 * 1024)  # after gzip decoding
    tls_cert_file: str = setting(_pem_file, "")  # with tls_key_file: TLS
    tls_key_file: str = setting(_pem_file, "")
    client_ca_file: str = setting(_pem_file, "")  # set: client certificates are verified
    # Implied by client_ca_file; false is refused (a client without one got in on its token alone).
    client_cert_required: bool = setting(boolean, True)
    shutdown_timeout_s: float = setting(_SECONDS, 30.0)  # grace for requests in flight
    # Read API and /metrics: 'Authorization: Bearer <the file's token>'; required off loopback.
    read_token_file: str = setting(_read_token_file, "")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str = setting(string, "/var/lib/erpath-collector/collector.db")  # SQLite
    journal_mode: str = setting(one_of("wal", "delete"), "wal")  # SQLite
    # PostgreSQL instead of SQLite: postgresql://user@host:port/db (no password in it).
    url: str = setting(_postgresql_url, "")
    # The password's libpq passfile; unset: the systemd credential `pgpass`, else libpq's
    # PGPASSFILE or ~/.pgpass.
    passfile: str = setting(_passfile, "")
    writers: int = setting(integer(1, 64), 4)  # PostgreSQL writer connections
    observations_retention_days: float = setting(_DAYS, 14.0)
    events_retention_days: float = setting(_DAYS, 90.0)
    traces_retention_days: float = setting(_DAYS, 90.0)  # traces of path changes
    alerts_retention_days: float = setting(_DAYS, 90.0)  # resolved alerts
    prune_interval_s: float = setting(_SECONDS, 3600.0)
    # A path its agent stopped reporting expires after this many of the agent's intervals
    # (its series go, its alerts resolve); a silent agent's paths stay.
    path_expiry_intervals: float = setting(_RATE, 20.0)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    rate_per_agent_per_s: float = setting(_RATE, 2.0)
    burst_per_agent: int = setting(_COUNT, 60)  # a spool flush after an outage
    default_interval_s: float = setting(_SECONDS, 30.0)  # for reports that carry none
    tokens_refresh_s: float = setting(_SECONDS, 2.0)  # when added tokens take effect
    failed_auth_per_address_per_s: float = setting(_RATE, 1.0)
    failed_auth_burst_per_address: int = setting(_COUNT, 30)
    max_in_flight: int = setting(_COUNT, 64)  # more get 503 with Retry-After
    max_in_flight_per_agent: int = setting(_COUNT, 2)  # more from one agent get 429
    body_read_timeout_s: float = setting(_SECONDS, 30.0)  # a body still arriving then gets 408
    # Paths (targets) kept per agent: a report's new targets beyond them are refused (not
    # stored, counted in targets_refused); the report itself is accepted.
    max_targets_per_agent: int = setting(_COUNT, 2048)


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    flip_confirm_reports: int = setting(_COUNT, 2)  # reports in a row that confirm a flip
    # Reports in a row that confirm a circuit running on one link.
    redundancy_lost_reports: int = setting(_COUNT, 3)
    silent_after_intervals: float = setting(_RATE, 3.0)  # agent intervals without a report
    evaluate_interval_s: float = setting(_SECONDS, 5.0)


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    alertmanager_urls: tuple[str, ...] = setting(array(http_url("http://127.0.0.1:9093")), ())
    webhook_urls: tuple[str, ...] = setting(array(http_url("https://chat.example.net/hook")), ())
    resend_interval_s: float = setting(_SECONDS, 60.0)  # below Alertmanager's resolve_timeout
    flip_hold_s: float = setting(_SECONDS, 3600.0)  # a flip alert resolves after this long
    timeout_s: float = setting(_SECONDS, 10.0)  # per delivery
    backoff_initial_s: float = setting(_SECONDS, 1.0)
    backoff_max_s: float = setting(_SECONDS, 60.0)
    recent_s: float = setting(_SECONDS, 86400.0)  # resolved alerts GET /api/v1/alerts lists
    runbook_base_url: str = setting(http_url(_RUNBOOKS), _RUNBOOKS)  # + "/" + alertname
    dashboard_base_url: str = setting(http_url(_DASHBOARD), _DASHBOARD)  # + "?var-site=..."


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    per_site_aggregates: bool = setting(boolean, False)  # instead of per-agent series


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    ingest: IngestConfig = IngestConfig()
    detection: DetectionConfig = DetectionConfig()
    alerts: AlertsConfig = AlertsConfig()
    metrics: MetricsConfig = MetricsConfig()
    source: str = "<defaults>"  # the file, for messages


SECTIONS = {
    "server": table(ServerConfig),
    "store": table(StoreConfig),
    "ingest": table(IngestConfig),
    "detection": table(DetectionConfig),
    "alerts": table(AlertsConfig),
    "metrics": table(MetricsConfig),
}


def from_dict(doc: dict[str, Any], source: str = "<dict>") -> Config:
    """Build and validate a Config from a parsed TOML document."""
    r = Reader(source, doc, sections=SECTIONS)
    reads = {name: r.section(name) for name in SECTIONS}
    cfg = Config(**{name: read.record() for name, read in reads.items()}, source=source)
    given = reads["server"].data
    s = cfg.server
    if ("tls_cert_file" in given) != ("tls_key_file" in given):
        r.add(
            "[server]", "tls_cert_file needs tls_key_file: set both (TLS) or neither (plain HTTP)"
        )
    if (
        "client_ca_file" in given or given.get("client_cert_required")
    ) and "tls_cert_file" not in given:
        r.add(
            "[server] client_ca_file",
            "client certificates need TLS; set tls_cert_file and tls_key_file",
        )
    if given.get("client_cert_required") is False and "client_ca_file" in given:
        r.add(
            "[server] client_cert_required = false",
            "with client_ca_file every client must present a certificate that names its agent;"
            " remove client_cert_required (or client_ca_file to go without client certificates)",
        )
    if given.get("client_cert_required") and "client_ca_file" not in given:
        r.add(
            "[server] client_cert_required",
            "needs client_ca_file to verify client certificates against",
        )
    if not s.read_token_file and not _loopback(s.host):
        r.add(
            f"[server] host = {s.host!r}",
            "the read API and /metrics (host names, NAT and hop addresses) would be open to"
            " the network; set read_token_file (readers send 'Authorization: Bearer <token>'),"
            ' or listen on host = "127.0.0.1"',
        )
    stored = reads["store"].data
    if _url_password(cfg.store.url):
        r.add(
            "[store] url (its password not shown)",
            "holds a password, which must not sit in the TOML; remove it from the URL and put"
            ' it in a libpq passfile (passfile = "/etc/erpath/pgpass", mode 0600) or a'
            " systemd credential named pgpass",
        )
    if "url" in stored and ("path" in stored or "journal_mode" in stored):
        r.add(
            "[store] url",
            "is PostgreSQL, path and journal_mode are SQLite: keep url (and remove path and"
            " journal_mode) or keep path (and remove url)",
        )
    if not cfg.store.url and ("passfile" in stored or "writers" in stored):
        r.add("[store] passfile/writers", "apply to PostgreSQL only: set url, or remove them")
    if cfg.alerts.backoff_max_s < cfg.alerts.backoff_initial_s:
        r.add(
            f"[alerts] backoff_max_s = {cfg.alerts.backoff_max_s:g}",
            f"must not be below backoff_initial_s ({cfg.alerts.backoff_initial_s:g})",
        )
    r.done()
    return cfg


def load(path: str | Path) -> Config:
    """Read and validate a TOML file; raise ConfigError naming file, key and fix."""
    doc = read_toml(path, if_missing="cannot read: no such file; check the --config path")
    return from_dict(doc, str(path))
