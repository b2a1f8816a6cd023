"""Site facts from Azure written into the agent's TOML, keeping what people wrote.

tomlkit (here and nowhere else) edits the document in place, so comments,
key order and the keys Azure does not know (CE addresses, link design, the
failover order) stay as they were.  A [[circuit]] is matched by name: keys
Azure knows are set, others are left alone; a new circuit is appended.  The
result is validated with the agent's own config reader before anything is
written, and written atomically.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from agent.config import loads
from agent.facts.azure import Facts, FactsError, PeeringFacts
from agent.settings import ConfigError


@dataclass(frozen=True, slots=True)
class CircuitUpdate:
    """The [[circuit]] keys Azure's facts give for one circuit, in the order they are written."""

    name: str
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Merged:
    old_text: str
    new_text: str
    added: tuple[str, ...]  # circuits new to the file
    changed: tuple[str, ...]  # circuits whose keys changed
    notes: tuple[str, ...]

    @property
    def unchanged(self) -> bool:
        return self.old_text == self.new_text

    def diff(self, path: str) -> str:
        return "".join(
            difflib.unified_diff(
                self.old_text.splitlines(keepends=True),
                self.new_text.splitlines(keepends=True),
                fromfile=f"{path} (before)",
                tofile=f"{path} (imported)",
            )
        )


def updates(facts: Facts) -> tuple[list[CircuitUpdate], list[str]]:
    """What to write per circuit, and notes on what was left out and why."""
    notes = list(facts.notes)
    filters = {f.name: f for f in facts.route_filters}
    peerings = {p.circuit: p for p in facts.peerings}
    names = list(dict.fromkeys([*(c.name for c in facts.circuits), *peerings]))
    for f in facts.route_filters:  # a filter file alone names its circuits in `peerings`
        names += [c for c in f.circuits if c not in names]
    circuits = {c.name: c for c in facts.circuits}
    out: list[CircuitUpdate] = []
    for name in names:
        values: dict[str, Any] = {"name": name}
        c = circuits.get(name)
        if c is not None:
            if c.location:
                values["location"] = c.location
            else:
                notes.append(
                    f"circuit {name}: no peering location in the file (an ExpressRoute Direct "
                    "circuit has it on its port): write location = by hand"
                )
            if c.sku:
                values["sku"] = c.sku
        p = peerings.get(name)
        filter_name = None
        if p is not None:
            values.update(_peering_values(p, notes))
            filter_name = p.route_filter or p.route_filter_v6
            if p.route_filter and p.route_filter_v6 and p.route_filter != p.route_filter_v6:
                notes.append(
                    f"circuit {name}: IPv6 Microsoft peering uses route filter "
                    f"{p.route_filter_v6}, IPv4 uses {p.route_filter}: the IPv4 one is imported"
                )
            if filter_name is None:
                notes.append(
                    f"circuit {name}: Microsoft peering has no route filter, so Microsoft "
                    "advertises no prefix over it; attach one (az network express-route "
                    "peering update --route-filter ...)"
                )
        else:
            filter_name = next((f.name for f in facts.route_filters if name in f.circuits), None)
        if filter_name is not None:
            rf = filters.get(filter_name)
            if rf is None:
                notes.append(
                    f"circuit {name}: uses route filter {filter_name}, whose rules are not in "
                    f"the files given; add `az network route-filter show -n {filter_name} -o json`"
                )
            else:
                values["route_filter"] = rf.name
                values["route_filter_communities"] = list(rf.communities)
                notes += _community_notes(name, rf.name, rf.communities, facts)
        out.append(CircuitUpdate(name, values))
    return out, notes


def _peering_values(p: PeeringFacts, notes: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    v4 = (p.primary_subnet, p.secondary_subnet)
    v6 = (p.primary_subnet_v6, p.secondary_subnet_v6)
    # A dual-stack circuit: the /30s and, beside them, the /126s in the _v6 keys.
    # None removes a key: IPv6 peering that Azure no longer has leaves no stale /126s.
    if all(v4):
        values["primary_subnet"], values["secondary_subnet"] = v4
        values["primary_subnet_v6"], values["secondary_subnet_v6"] = v6 if all(v6) else (None, None)
        if any(v6) and not all(v6):
            notes.append(
                f"circuit {p.circuit}: IPv6 Microsoft peering has one link's subnet only "
                f"({', '.join(s for s in v6 if s)}); not imported: write both links' /126s "
                "as primary_subnet_v6 / secondary_subnet_v6"
            )
    elif all(v6):
        # IPv6-only Microsoft peering: the /126s in the keys of the circuit's one family.
        values["primary_subnet"], values["secondary_subnet"] = v6
        values["primary_subnet_v6"] = values["secondary_subnet_v6"] = None
    advertised = [*p.advertised_prefixes, *p.advertised_prefixes_v6]
    if advertised:
        values["advertised_prefixes"] = list(dict.fromkeys(advertised))
    if p.peer_asn is not None:
        values["peer_asn"] = p.peer_asn
    return values


def _community_notes(circuit: str, rf: str, allowed: tuple[str, ...], facts: Facts) -> list[str]:
    if facts.communities is None:
        return []
    notes = []
    for value in allowed:
        c = facts.communities.get(value)
        if c is None:
            notes.append(
                f"circuit {circuit}: route filter {rf} allows {value}, which is no community in "
                f"{facts.communities_file}"
            )
        elif not c.authorized:
            notes.append(
                f"circuit {circuit}: route filter {rf} allows {value} ({c.name}), but the "
                "subscription may not use it (isAuthorizedToUse is false)"
            )
    return notes


# --------------------------------------------------------------------------- the TOML document


def merge(path: Path, facts: Facts) -> Merged:
    """The config file with the facts merged in, validated; FactsError if it would be invalid."""
    try:
        old_text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as e:
        raise FactsError(f"{path}: cannot read it: {e}") from None
    try:
        doc = tomlkit.parse(old_text)
    except TOMLKitError as e:
        raise FactsError(
            f"{path}: not valid TOML ({e}); fix it first (check-config says where)"
        ) from None
    todo, notes = updates(facts)
    added, changed = [], []
    if todo:
        circuits = doc.get("circuit")
        if circuits is None:
            circuits = tomlkit.aot()
            doc.append("circuit", circuits)
        elif not isinstance(circuits, list):
            raise FactsError(f"{path}: circuit is not an array of tables; write [[circuit]]")
        for u in todo:
            table = next((t for t in circuits if t.get("name") == u.name), None)
            if table is None:
                missing = [
                    k
                    for k in ("location", "primary_subnet", "secondary_subnet")
                    if k not in u.values
                ]
                if missing == ["location"]:
                    raise FactsError(
                        f"circuit {u.name} is not in {path} and the files give no peering "
                        "location (an ExpressRoute Direct circuit has it on its port); add "
                        f'[[circuit]] name = "{u.name}" with location = "<the peering location>" '
                        "to the config, then import again"
                    )
                if missing:
                    raise FactsError(
                        f"circuit {u.name} is not in {path} and the files give no "
                        f"{', '.join(missing)}; add `az network express-route show` and "
                        "`az network express-route peering show -n MicrosoftPeering` output"
                    )
                table = tomlkit.table()
                for k, v in u.values.items():
                    if v is not None:
                        table[k] = _value(v)
                circuits.append(table)
                added.append(u.name)
                continue
            before = tomlkit.dumps(table)
            for k, v in u.values.items():
                if v is None:
                    table.pop(k, None)
                elif table.get(k) != v:
                    table[k] = _value(v)
            if tomlkit.dumps(table) != before:
                changed.append(u.name)
    if facts.communities_file is not None:
        section = doc.get("bgp_communities")
        if section is None:
            section = tomlkit.table()
            doc.append("bgp_communities", section)
        section["file"] = _relative(Path(facts.communities_file), path.parent)
    new_text = tomlkit.dumps(doc)
    try:
        loads(new_text, source=str(path), base_dir=path.absolute().parent)
    except ConfigError as e:
        raise FactsError(
            f"the imported facts would make {path} invalid, nothing written:\n{e}"
        ) from None
    return Merged(old_text, new_text, tuple(added), tuple(changed), tuple(notes))


def _value(v: Any) -> Any:
    if isinstance(v, list) and len(v) > 2:
        arr = tomlkit.array()
        arr.extend(v)
        arr.multiline(True)
        return arr
    return v


def _relative(file: Path, base: Path) -> str:
    file, base = file.absolute(), base.absolute()
    try:
        return str(file.relative_to(base))
    except ValueError:
        return str(file)


def write(path: Path, text: str) -> None:
    """Replace the file atomically, keeping its mode (a crash leaves the old or the new file)."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.absolute().parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
