"""python -m tests.lab up [SCENARIO] | down | scenario NAME | status | env [--json]"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .lab import Lab, LabError
from .scenarios import DEFAULT_SCENARIO, SCENARIOS


def _print_env(env: dict) -> None:
    print(
        f"lab {env['prefix']}  scenario={env['scenario']}  up={env['up']}  "
        f"rate_limit={env['rate_limit']}  ecmp={env['ecmp']}"
    )
    print("\nagents (namespace, measured address, management address):")
    for name, a in env["agents"].items():
        print(f"  {name:8} {a['namespace']:14} {a['address']:15} {a['mgmt_address']}")
    c = env["collector"]
    print(f"  collector {c['namespace']:13} {'':15} {c['mgmt_address']}")
    print("\nDNS servers:")
    for role, d in env["dns_servers"].items():
        print(f"  {role:7} {d['address']:15} {d['description']}")
    for trig, what in env["dns_servers"]["bad"]["triggers"].items():
        print(f"          {trig:22} {what}")
    print("\ncircuits:")
    for c in env["circuits"]:
        print(
            f"  {c['name']} ({c['location']}, {c['sku']}): primary {c['primary_subnet']} "
            f"secondary {c['secondary_subnet']}  MSEE {c['msee_addresses']}  "
            f"CE {c['ce_addresses']}  advertises {c['advertised_prefixes']}"
        )
    for e in env["internet_edges"]:
        print(f"\ninternet edge {e['name']}: NAT {e['nat_addresses']}  hops {e['hop_addresses']}")
    print(f"ER NAT pool: {env['er_nat_pool']}")
    print(f"silent hop: {env['silent_hop']['addresses']}")
    print(f"probe addresses: {env['probe_addresses']}")
    print(f"\ntargets ({len(env['targets'])}):")
    for t in env["targets"]:
        chain = (" via " + " -> ".join(t["cname_chain"])) if t["cname_chain"] else ""
        print(f"  {t['role']:9} {t['name']:45} {t['address']}:{t['port']}{chain}")
    print(f"\nservice tags: {env['service_tags_file']}\nTLS certificate: {env['tls']['cert_file']}")
    print(f"namespaces: {' '.join(env['namespaces'].values())}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab", description="erpath network lab")
    p.add_argument("--prefix", help="namespace prefix (default: $ERPATH_LAB_PREFIX or erp)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build the lab (tears down any previous one first)")
    up.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO, choices=list(SCENARIOS))
    up.add_argument("--no-rate-limit", action="store_true", help="routers send ICMP without limit")
    up.add_argument("--no-ecmp", action="store_true", help="single ISP path instead of ECMP")
    sub.add_parser("down", help="remove every namespace and process of the lab")
    sc = sub.add_parser("scenario", help="switch the running lab to a scenario")
    sc.add_argument("name", choices=list(SCENARIOS))
    sub.add_parser("status", help="what is running")
    sub.add_parser(
        "demo", help="the whole system in the lab, walked through every scenario (make demo)"
    )
    sub.add_parser("demo-down", help="clean up after a demo that crashed")
    env = sub.add_parser("env", help="addresses and names for tests and users")
    env.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    needs_root = args.cmd in ("up", "down", "scenario", "demo", "demo-down")
    if needs_root and os.geteuid() != 0:
        print("the lab needs root (network namespaces)", file=sys.stderr)
        return 2
    lab = Lab(prefix=args.prefix)
    try:
        if args.cmd == "demo":
            from .demo import run

            return run(lab)
        if args.cmd == "demo-down":
            removed = lab.down()  # every demo process lives in a lab namespace
            print(f"demo down: lab {lab.prefix} removed ({len(removed)} namespaces)")
            return 0
        if args.cmd == "up":
            lab = Lab(prefix=args.prefix, rate_limit=not args.no_rate_limit, ecmp=not args.no_ecmp)
            lab.rate_limit, lab.ecmp = not args.no_rate_limit, not args.no_ecmp
            seconds = lab.up(args.scenario)
            print(f"lab {lab.prefix} up in {seconds:.2f}s, scenario {args.scenario}")
        elif args.cmd == "down":
            removed = lab.down()
            print(f"lab {lab.prefix} down ({len(removed)} namespaces removed)")
        elif args.cmd == "scenario":
            lab.scenario(args.name)
            print(f"lab {lab.prefix} scenario {args.name}")
        elif args.cmd == "status":
            print(json.dumps(lab.status(), indent=2))
        elif args.cmd == "env":
            if args.json:
                print(json.dumps(lab.env(), indent=2))
            else:
                _print_env(lab.env())
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
