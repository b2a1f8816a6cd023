"""The command lines for site facts: `facts import`, `service-tags update`, `communities update`.

agent/cli.py wires them (`add_parsers`, `run`); the work is in
agent/facts/azure.py, agent/facts/merge.py and agent/tagsupdate.py.
Exit codes as the CLI's: 0 done (or nothing to change), 1 an update was
refused or could not be fetched (the current file is kept), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = "/etc/erpath/agent.toml"


class CommandError(Exception):
    """Bad input for one of these commands; the message names it and the fix."""


def add_parsers(sub: argparse._SubParsersAction, parser_class: type) -> None:
    facts = sub.add_parser("facts", help="site facts from Azure")
    facts_sub = facts.add_subparsers(dest="facts_command", required=True, parser_class=parser_class)
    imp = facts_sub.add_parser(
        "import",
        help="read az CLI JSON output (circuit, Microsoft peering, route filter, service "
        "communities) into the agent's config",
        description="Merge the facts of `az network express-route show`, `az network "
        "express-route peering show -n MicrosoftPeering` (or `peering list`), `az network "
        "route-filter show` and `az network route-filter rule list-service-communities` "
        "(saved with -o json) into the agent's TOML; comments and other keys are kept.",
    )
    imp.add_argument("files", nargs="+", metavar="FILE", help="JSON printed by the az CLI")
    imp.add_argument("--config", metavar="FILE", required=True, help="agent TOML config to write")
    imp.add_argument(
        "--dry-run", action="store_true", help="print what would change; write nothing"
    )
    for kind, noun in (("service-tags", "service tags"), ("communities", "BGP communities")):
        p = sub.add_parser(kind, help=f"keep the {noun} file fresh")
        p_sub = p.add_subparsers(dest="update_command", required=True, parser_class=parser_class)
        up = p_sub.add_parser(
            "update",
            help=f"fetch, check and atomically replace the {noun} file",
            description=f"Fetch the {noun} file (the config's url, --url or --file), check it "
            "and replace the config's file atomically, keeping the previous one as "
            "FILE.previous. The agent uses the new file from its next cycle.",
        )
        up.add_argument(
            "--config",
            metavar="FILE",
            default=DEFAULT_CONFIG,
            help=f"agent config ({DEFAULT_CONFIG})",
        )
        src = up.add_mutually_exclusive_group()
        src.add_argument("--url", help="fetch from this URL (a download page or a mirror)")
        src.add_argument("--file", metavar="FILE", help="take this local file")
        if kind == "communities":
            up.add_argument(
                "--if-configured",
                action="store_true",
                help="do nothing (exit 0) when the config has no [bgp_communities] url",
            )


def run(args: argparse.Namespace) -> int | None:
    """The exit code, or None when the command is none of these."""
    if args.command == "facts":
        return _facts_import(args)
    if args.command == "service-tags":
        return _update(args, "service-tags", "service_tags")
    if args.command == "communities":
        return _update(args, "communities", "bgp_communities")
    return None


def _facts_import(args: argparse.Namespace) -> int:
    from agent.facts import merge
    from agent.facts.azure import FactsError, read_files

    path = Path(args.config)
    try:
        facts = read_files(args.files)
        merged = merge.merge(path, facts)
    except FactsError as e:
        raise CommandError(str(e)) from None
    out = sys.stdout
    for note in merged.notes:
        out.write(f"note: {note}\n")
    if merged.unchanged:
        out.write(f"{path}: already up to date\n")
        return EXIT_OK
    if merged.old_text:
        out.write(merged.diff(str(path)))
    for name in merged.added:
        out.write(f"circuit {name}: added\n")
    for name in merged.changed:
        out.write(f"circuit {name}: changed (diff above)\n")
    if args.dry_run:
        out.write(f"{path}: not written (--dry-run)\n")
        return EXIT_OK
    merge.write(path, merged.new_text)
    out.write(f"wrote {path}; check it with: erpath-agent check-config {path}\n")
    return EXIT_OK


def _update(args: argparse.Namespace, kind, section: str) -> int:
    from agent import tagsupdate
    from agent.config import update_source

    file, url = update_source(args.config, section)
    table = f"[{section}]"
    if file is None:
        if getattr(args, "if_configured", False):
            print(f"{args.config}: no {table} file: nothing to update")
            return EXIT_OK
        raise CommandError(
            f"{args.config}: {table} has no file; set file = where the agent keeps it "
            "(e.g. /var/lib/erpath/ServiceTags_Public.json)"
        )
    try:
        if args.file:
            fetched = tagsupdate.read_file(args.file)
        elif args.url or url:
            fetched = tagsupdate.fetch_url(args.url or url)
        elif getattr(args, "if_configured", False):
            print(f"{args.config}: no {table} url: nothing to update")
            return EXIT_OK
        else:
            raise CommandError(
                f"{args.config}: {table} has no url; set url = the download page or a mirror, "
                "or give --url or --file"
            )
        outcome = tagsupdate.update(kind, file, fetched)
    except tagsupdate.UpdateError as e:
        print(f"erpath-agent: {kind} update refused: {e}", file=sys.stderr)
        return EXIT_REFUSED
    print(outcome.summary(kind))
    return EXIT_OK
