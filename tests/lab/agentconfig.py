"""Agent configs for the lab, as the site's network engineer would keep them per scenario.

The committed configs in tests/lab/agents/ describe the healthy lab.  Some
scenarios are a change of what the customer advertises to Microsoft (the
internet NAT prefix leaked onto a circuit, a NAT pool on two circuits); a
site's facts say what it advertises, so for those scenarios the config says
it too — and the agent's findings follow from it (the IPv6 scenarios add the
sites' IPv6 prefixes a circuit advertises).  Others are another design
of the circuit (both links active instead of one standing by): the circuit's
`links` fact says which.  The route filter scenarios name each circuit's
route filter and the communities it allows, and the lab's communities file.
A scenario of another site design (the IP VPN) has other site facts
altogether: tests/lab/agents/designs/<design>.toml stands in for the site
facts of every agent's file, <design>-reverse.toml for the azure-side
agent's reverse targets (the sites' NAT addresses), and the failover order
is the design's.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import routefilter
from .scenarios import SCENARIOS

AGENTS_DIR = Path(__file__).with_name("agents")
DESIGNS_DIR = AGENTS_DIR / "designs"
# The site facts of an agent's file: from their heading to the next heading.
_SITE_FACTS = re.compile(r"^# ---- site facts -+\n.*?(?=^# ---- )", re.M | re.S)
_PREFER = re.compile(r"^prefer\s*=\s*\[[^\]]*\]", re.M)
# The azure-side agent's reverse targets (the sites' NAT addresses): to the end.
_REVERSE_TARGETS = re.compile(r"^# ---- reverse targets.*", re.M | re.S)
_CIRCUIT = re.compile(r"^\[\[circuit\]\]\s*$", re.M)
_NAME = re.compile(r'^name\s*=\s*"([^"]+)"', re.M)
_ADVERTISED = re.compile(r"^advertised_prefixes\s*=\s*\[[^\]]*\]", re.M)
_LINKS = re.compile(r'^links\s*=\s*"[^"]*"', re.M)
_PROBE = re.compile(r"^\[probe\]\s*\n", re.M)
_TAGS_FILE = re.compile(r'^file\s*=\s*"([^"]+)"', re.M)
_V6_FACT = re.compile(r"^(primary_subnet_v6|secondary_subnet_v6|source_prefixes_v6)\s*=.*\n", re.M)


def config_text(node: str, scenario: str, *, probe: dict[str, float] | None = None) -> str:
    """The agent config of `node` (branch, dchost, dccore, azure) for `scenario`.

    `probe` adds keys to the [probe] table (e.g. a demo's short interval).
    """
    text = (AGENTS_DIR / f"{node}.toml").read_text()
    if probe:
        lines = "".join(f"{k} = {v!r}\n" for k, v in probe.items())
        text = _PROBE.sub(lambda m: m.group(0) + lines, text, count=1)
    s = SCENARIOS[scenario]
    if s.wan != "leased":
        text = _design_facts(text, s.wan, s.prefer)
    # What each circuit advertises, both families (IPv6: the sites' own prefixes).
    advertised = {
        c: s.advertised.get(c, ()) + s.advertised6.get(c, ())
        for c in {*s.advertised, *s.advertised6}
    }
    link_mode = SCENARIOS[scenario].link_mode
    parts = _CIRCUIT.split(text)
    for i in range(1, len(parts)):
        name = _NAME.search(parts[i])
        if name and name.group(1) in advertised:
            prefixes = ", ".join(f'"{p}"' for p in advertised[name.group(1)])
            parts[i] = _ADVERTISED.sub(f"advertised_prefixes = [{prefixes}]", parts[i], count=1)
        if name and name.group(1) in link_mode:
            parts[i] = _LINKS.sub(f'links = "{link_mode[name.group(1)]}"', parts[i], count=1)
        if name and name.group(1) in s.route_filters:
            parts[i] = _route_filter(s.route_filters[name.group(1)]) + parts[i]
    if s.route_filters:
        # The communities' prefixes, so the agent knows what each filter lets through
        # (among the site facts, before the circuits: the targets stay last).
        parts[0] += f'[bgp_communities]\nfile = "{routefilter.FILE.resolve()}"\n\n'
    text = "[[circuit]]\n".join(parts)
    if not SCENARIOS[scenario].ipv6:
        # IPv6 is not rolled out in this scenario: no IPv6 peering is configured
        # (so the agent probes no IPv6 MSEE), no IPv6 leaves via the edge.
        text = _V6_FACT.sub("", text)
    # Written elsewhere, the config must still find the lab's service tags.
    return _TAGS_FILE.sub(
        lambda m: f'file = "{(AGENTS_DIR / m.group(1)).resolve()}"', text, count=1
    )


def _design_facts(text: str, design: str, prefer: tuple[str, ...]) -> str:
    """`text` with the site facts (and failover order) of another site design."""
    facts = (DESIGNS_DIR / f"{design}.toml").read_text()
    heading = f"# ---- site facts ({design} design) ".ljust(80, "-")
    text, n = _SITE_FACTS.subn(lambda _: f"{heading}\n\n{facts}", text, count=1)
    if n != 1:
        raise ValueError(f"no '# ---- site facts' section to replace in an agent config ({design})")
    # The design's NAT addresses are other addresses: the reverse targets follow.
    reverse = (DESIGNS_DIR / f"{design}-reverse.toml").read_text()
    heading = f"# ---- reverse targets ({design} design) ".ljust(80, "-")
    text = _REVERSE_TARGETS.sub(lambda _: f"{heading}\n\n{reverse}", text, count=1)
    order = ", ".join(f'"{p}"' for p in prefer)
    return _PREFER.sub(f"prefer = [{order}]  # the {design} design's order", text, count=1)


def _route_filter(allowed: tuple[str, ...]) -> str:
    """A circuit's route filter facts, as `erpath-agent facts import` writes them."""
    communities = ", ".join(f'"{c}"' for c in allowed)
    return (
        f'route_filter = "{routefilter.ROUTE_FILTER}"\nroute_filter_communities = [{communities}]\n'
    )


def write_config(node: str, scenario: str, directory: Path) -> Path:
    path = directory / f"{node}-{scenario}.toml"
    path.write_text(config_text(node, scenario))
    return path
