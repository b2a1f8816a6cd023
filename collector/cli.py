"""`erpath-collector`: serve, and manage agent tokens.

Bad configuration exits 2 with the message that names file, key and fix;
never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Sequence

from collector import auth
from collector.config import Config, ConfigError, load
from collector.store import Store, StoreError

DEFAULT_CONFIG = "/etc/erpath/collector.toml"
GIL_SWITCH_INTERVAL_S = 0.0005
# Net growth of GC-tracked objects that starts a cyclic collection (Python's default: 700).
GC_YOUNG_THRESHOLD = 100_000
# EX_SOFTWARE: a background worker died; systemd's Restart=on-failure restarts us.
EXIT_WORKER_DIED = 70


def tls_context(cfg: Config) -> ssl.SSLContext | None:
    s = cfg.server
    if not s.tls_cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(s.tls_cert_file, s.tls_key_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            [
                f"{cfg.source}: [server] tls_cert_file/tls_key_file: cannot load ({exc}); "
                "give a PEM certificate chain and its matching private key"
            ]
        ) from None
    if s.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=s.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                [
                    f"{cfg.source}: [server] client_ca_file: cannot load ({exc}); give a PEM CA bundle"
                ]
            ) from None
        # Always required: with an optional certificate a client sending none was
        # let in on its token alone, and mTLS was as strong as a bearer token.
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _quiet_protocol_errors(record: logging.LogRecord) -> bool:
    """aiohttp logs every malformed request (a control character in a header …)
    as an ERROR with a traceback: anyone on the network could fill the journal.
    They already got a 400; keep one escaped DEBUG line instead."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1] if record.exc_info else None
    if not isinstance(exc, HttpProcessingError):
        return True
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    record.msg, record.args = "malformed HTTP request refused (400): %r", (exc.message,)
    record.exc_info, record.exc_text = None, None
    return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _serve(cfg: Config) -> int:
    from aiohttp import web

    from agent.sdnotify import Notifier
    from collector.app import create_app

    ctx = tls_context(cfg)
    # Large reports decode on worker threads; with the default 5 ms GIL switch interval
    # the event loop waited up to 5 ms for each hand-back and every other agent's
    # request slowed tenfold meanwhile (tests/reliability/test_costly_report.py).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    logging.getLogger("aiohttp.server").addFilter(_quiet_protocol_errors)
    died: list[str] = []

    def stop_for_restart(why: str) -> None:
        # run_app shuts down gracefully on SIGTERM (requests in flight finish, the
        # store closes); the status below tells systemd it was not a clean stop.
        died.append(why)
        os.kill(os.getpid(), signal.SIGTERM)

    app = create_app(cfg, on_worker_death=stop_for_restart)
    # Each report in flight holds a few thousand tracked objects (its decoded model), so
    # under load the default threshold ran the cyclic GC hundreds of times a second, its
    # full passes walking every report in flight: a quarter of the collector's CPU per
    # report (tests/bench/bench_ingest.py).  Reports hold no cycles (reference counting
    # frees them), so collect only after a real growth, and never walk the start-up's
    # objects again.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    scheme = "https" if ctx else "http"

    def listening(_message: str) -> None:
        # run_app calls this once the sockets listen: the moment systemd's
        # Type=notify unit should count as started.
        logging.getLogger("collector").info(
            "listening on %s://%s:%d", scheme, cfg.server.host, cfg.server.port
        )
        Notifier().ready(f"listening on {cfg.server.host}:{cfg.server.port}")

    try:
        web.run_app(
            app,
            host=cfg.server.host,
            port=cfg.server.port,
            ssl_context=ctx,
            shutdown_timeout=cfg.server.shutdown_timeout_s,
            access_log=None,
            print=listening,
        )
    except StoreError as exc:
        print(f"erpath-collector: {cfg.source}: [store] path: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"erpath-collector: cannot listen on {cfg.server.host}:{cfg.server.port} ({exc.strerror}); "
            f"change [server] host/port in {cfg.source}",
            file=sys.stderr,
        )
        return 2
    if died:
        print(f"erpath-collector: {died[0]} died; exiting for a restart", file=sys.stderr)
        return EXIT_WORKER_DIED
    return 0


def _with_store(cfg: Config) -> Store:
    store = Store.for_config(cfg.store)
    store.open()
    return store


def _token(args: argparse.Namespace, cfg: Config) -> int:
    store = _with_store(cfg)
    try:
        if args.action == "add":
            try:
                token_id, token = store.write_sync(
                    auth.add, args.agent_id, time.time(), args.site, args.role
                )
            except ValueError as exc:
                print(f"erpath-collector: {exc}", file=sys.stderr)
                return 2
            print(token)
            bound = (f"site {args.site!r}" if args.site else "the site of its first report") + (
                f", role {args.role!r}" if args.role else ", the role of its first report"
            )
            print(
                f"token {token_id} for agent {args.agent_id}, bound to {bound}: shown once, "
                "store it in the agent's config now",
                file=sys.stderr,
            )
        elif args.action == "revoke":
            n = store.write_sync(auth.revoke, args.id, time.time())
            if not n:
                print(f"erpath-collector: no active token or agent {args.id!r}", file=sys.stderr)
                return 1
            print(f"revoked {n} token(s)")
        else:
            rows = store.read_sync(auth.rows)
            print(f"{'TOKEN ID':<18} {'AGENT':<32} {'SITE':<16} {'ROLE':<11} {'CREATED':<20} STATE")
            for r in rows:
                created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.created_s))
                state = (
                    "active"
                    if r.revoked_s is None
                    else "revoked " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.revoked_s))
                )
                site, role = r.site or "(first report)", r.role or "(first report)"
                print(f"{r.id:<18} {r.agent_id:<32} {site:<16} {role:<11} {created:<20} {state}")
    finally:
        store.close()
    return 0


def _agent(args: argparse.Namespace, cfg: Config) -> int:
    from collector.forget import forget

    store = _with_store(cfg)
    try:
        gone = store.write_sync(forget, args.agent_id, time.time())
    finally:
        store.close()
    if gone is None:
        print(
            f"erpath-collector: no agent {args.agent_id!r}; GET /api/v1/agents lists them",
            file=sys.stderr,
        )
        return 1
    print(
        f"forgot agent {gone.agent} (site {gone.site}): {gone.paths} path(s) and their series"
        f" removed, {gone.alerts_resolved} alert(s) resolved"
        + (f"; site {gone.site} had no other agent and is gone too" if gone.site_forgotten else "")
    )
    print(
        f"its tokens still work: 'erpath-collector token revoke {gone.agent}' keeps it from"
        " coming back",
        file=sys.stderr,
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="erpath-collector", description=__doc__.splitlines()[0])
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config", default=DEFAULT_CONFIG, help=f"TOML file (default {DEFAULT_CONFIG})"
        )

    with_config(sub.add_parser("serve", help="run the collector"))
    with_config(sub.add_parser("check-config", help="validate the configuration and exit"))
    tok = sub.add_parser("token", help="manage agent tokens")
    tsub = tok.add_subparsers(dest="action", required=True)
    add = tsub.add_parser("add", help="create a token for an agent; prints it once")
    add.add_argument("agent_id")
    add.add_argument(
        "--site",
        help="the agent's [agent] site; reports for another site get 403 "
        "(default: bound by the first report)",
    )
    add.add_argument(
        "--role",
        choices=auth.ROLES,
        help="the agent's [agent] role; reports with another role get 403 "
        "(default: bound by the first report)",
    )
    rev = tsub.add_parser("revoke", help="revoke a token by its id, or all tokens of an agent")
    rev.add_argument("id")
    lst = tsub.add_parser("list", help="list tokens (never the secrets)")
    for sp in (add, rev, lst):
        with_config(sp)
    agent = sub.add_parser("agent", help="manage agents the collector knows")
    asub = agent.add_subparsers(dest="action", required=True)
    fgt = asub.add_parser(
        "forget",
        help="remove a decommissioned agent: its paths, state and series; resolve its alerts",
    )
    fgt.add_argument("agent_id")
    with_config(fgt)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load(args.config)
        if args.command == "check-config":
            tls_context(cfg)
            print(f"{args.config}: OK")
            return 0
        if args.command == "serve":
            return _serve(cfg)
        if args.command == "agent":
            return _agent(args, cfg)
        return _token(args, cfg)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"erpath-collector: {problem}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"erpath-collector: [store] path: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
