"""`erpath-agent`: the command line.

Exit codes: 0 measured and every path as expected, 1 measured but a path
differs from its expectation or an asymmetry finding of severity warning or
worse exists (usable from cron and CI), 2 usage or configuration error.
No traceback reaches a user for bad input or a network outcome.
"""

from __future__ import annotations

import argparse
import sys

from agent import __version__

EXIT_OK, EXIT_PATH, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default exit code is 2 too
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"erpath-agent: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="erpath-agent", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"erpath-agent {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    probe = sub.add_parser("probe", help="measure the paths now")
    probe_sub = probe.add_subparsers(dest="probe_command", required=True, parser_class=_Parser)
    once = probe_sub.add_parser(
        "once",
        help="one probe cycle over the targets, printed as a table or JSON",
        description="Resolve, route, TCP-probe and trace every target once; print verdicts.",
    )
    once.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="host name or address, optionally host:port (replaces the configured targets)",
    )
    once.add_argument(
        "--config",
        metavar="FILE",
        help="agent TOML config (default: built-in catalog, system resolver)",
    )
    once.add_argument(
        "--resolver",
        action="append",
        metavar="IP",
        help="DNS resolver to use, repeatable ('system' = the system resolver)",
    )
    once.add_argument("--port", type=int, metavar="N", help="TCP port to probe (default 443)")
    once.add_argument(
        "--trace-protocol", choices=("tcp", "udp", "icmp"), help="traceroute probe protocol"
    )
    once.add_argument("--no-trace", action="store_true", help="skip the traceroute")
    once.add_argument(
        "--all-addresses",
        action="store_true",
        help="probe every resolved address, not only the one users get",
    )
    once.add_argument(
        "--family",
        choices=("4", "6", "both"),
        help="probe the first IPv4 (4) or IPv6 (6) address of each name, or one of each "
        "(both); default: the family users get (RFC 6724 order, RFC 8305 fallback)",
    )
    once.add_argument("--hops", action="store_true", help="print the hops of each trace")
    once.add_argument(
        "--explain",
        action="store_true",
        help="print the evidence of each verdict and what to change for each finding",
    )
    once.add_argument(
        "--expect",
        choices=("expressroute", "internet", "cdn"),
        help="the path the TARGETs named on the command line should take",
    )
    once.add_argument("--json", action="store_true", help="print the report as one JSON document")

    run = sub.add_parser(
        "run",
        help="the service: probe on an interval and on route changes, report to the collector",
    )
    run.add_argument("--config", metavar="FILE", required=True, help="agent TOML config")

    check = sub.add_parser("check-config", help="validate a config file and summarise it")
    check.add_argument("file", metavar="FILE")
    from agent.facts import commands as facts_commands  # argparse only: cheap

    facts_commands.add_parsers(sub, _Parser)
    return p


def _load_config(path: str | None):
    from agent.config import load

    return load(path)


def _apply_overrides(config, args):
    from dataclasses import replace

    from agent.config import with_cli_targets

    probe = config.probe
    if args.port is not None:
        if not 0 < args.port < 65536:
            raise _UsageError(f"--port {args.port}: must be 1 to 65535")
        probe = replace(probe, port=args.port)
    if args.trace_protocol:
        probe = replace(probe, trace_protocol=args.trace_protocol)
    if args.all_addresses:
        probe = replace(probe, addresses="all")
    if args.family == "both":
        probe = replace(probe, addresses="both")
    dns = config.dns
    if args.resolver:
        from agent.config import normalize_resolver

        try:
            resolvers = tuple(normalize_resolver(r) for r in args.resolver)
        except ValueError as e:
            raise _UsageError(f"--resolver: {e}") from None
        dns = replace(dns, resolvers=resolvers)
    config = replace(config, probe=probe, dns=dns)
    if args.targets:
        config = with_cli_targets(config, args.targets, expect=args.expect)
    elif args.expect:
        raise _UsageError(
            "--expect applies to TARGETs named on the command line; name at least one"
        )
    return config


class _UsageError(Exception):
    pass


def _probe_once(args) -> int:
    from agent import output
    from agent.cycle import ProbePlan, run_cycle
    from agent.service.seq import next_seq, state_dir

    config = _apply_overrides(_load_config(args.config), args)
    targets = config.targets()
    if not targets:
        raise _UsageError(
            "no targets: name some on the command line or add [[target]] entries to the config"
        )
    family = int(args.family) if args.family in ("4", "6") else None
    plan = ProbePlan(targets=targets, trace=not args.no_trace, family=family)
    progress = output.Progress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    try:
        seq = next_seq(state_dir())
    except OSError:
        seq = 0  # read-only host: report still valid, seq is then only informative
    report = run_cycle(
        config, plan, seq=seq, progress=progress.update if progress else lambda _m: None
    )
    if progress:
        progress.clear()
    if args.json:
        import json

        from agent.report import to_dict

        json.dump(to_dict(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(output.render(report, hops=args.hops, explain=args.explain))
    return EXIT_PATH if output.needs_attention(report) else EXIT_OK


def _check_config(args) -> int:
    from agent import output

    config = _load_config(args.file)
    sys.stdout.write(output.render_config(config))
    return EXIT_OK


def _run(args) -> int:
    from agent.service.runner import AgentService, configure_logging

    configure_logging()
    return AgentService(args.config).run()


def _user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that are the user's to fix: config and set-up errors.

    Looked up among the modules loaded, so that each command imports only
    what it uses (`probe once` never loads the service): a module not loaded
    raised nothing.
    """
    errors: list[type[Exception]] = [_UsageError]
    for module, name in (
        ("agent.config", "ConfigError"),
        ("agent.service.runner", "ServiceError"),
        ("agent.facts.commands", "CommandError"),
    ):
        loaded = sys.modules.get(module)
        if loaded is not None:
            errors.append(getattr(loaded, name))
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from agent.facts import commands as facts_commands

        if (code := facts_commands.run(args)) is not None:
            return code
        if args.command == "probe":
            return _probe_once(args)
        if args.command == "run":
            return _run(args)
        return _check_config(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if not isinstance(e, _user_errors()):
            raise
        print(f"erpath-agent: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
