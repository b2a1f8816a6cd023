"""Azure's JSON about circuits, Microsoft peering and route filters, read into site facts.

The engineer runs the Azure CLI and saves what it prints; erpath reads the
files (no SDK, no network):

- `az network express-route show` -- a circuit: name, peering location, SKU
  tier, and (usually) its peerings;
- `az network express-route peering show -n MicrosoftPeering` (or `peering
  list`) -- the peer /30s, the peer ASN, the advertised public prefixes, the
  route filter's id;
- `az network route-filter show` -- the filter's rules and the communities
  they allow;
- `az network route-filter rule list-service-communities` -- every community
  with its prefixes (agent/verdict/communities.py reads that one).

The CLI prints resources flattened (`peerAsn` at the top); the REST API,
`az resource show` and ARM template exports nest them under `properties`.
Both are read: every object is flattened first, its own keys winning.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.verdict.communities import BgpCommunities, CommunitiesError, service_entries

Sku = Literal["standard", "premium"]

CIRCUIT_TYPE = "microsoft.network/expressroutecircuits"
PEERING_TYPE = "microsoft.network/expressroutecircuits/peerings"
FILTER_TYPE = "microsoft.network/routefilters"

_CIRCUIT_ID = re.compile(r"/expressRouteCircuits/([^/]+)", re.IGNORECASE)
_FILTER_ID = re.compile(r"/routeFilters/([^/]+)", re.IGNORECASE)

_COMMANDS = (
    "az network express-route show -g RG -n CIRCUIT -o json; "
    "az network express-route peering show -g RG --circuit-name CIRCUIT -n MicrosoftPeering -o json; "
    "az network route-filter show -g RG -n FILTER -o json; "
    "az network route-filter rule list-service-communities -o json"
)


class FactsError(ValueError):
    """A file that cannot be read as Azure facts; the message names the file and the fix."""


@dataclass(frozen=True, slots=True)
class PeeringFacts:
    """Microsoft peering of one circuit."""

    circuit: str
    primary_subnet: str | None = None
    secondary_subnet: str | None = None
    primary_subnet_v6: str | None = None
    secondary_subnet_v6: str | None = None
    advertised_prefixes: tuple[str, ...] = ()
    advertised_prefixes_v6: tuple[str, ...] = ()
    peer_asn: int | None = None
    route_filter: str | None = None  # the filter's name, from its id
    route_filter_v6: str | None = None


@dataclass(frozen=True, slots=True)
class CircuitFacts:
    name: str
    location: str | None = None
    sku: Sku | None = None


@dataclass(frozen=True, slots=True)
class RouteFilterFacts:
    name: str
    communities: tuple[str, ...]  # allowed by its Allow rules, in the rules' order
    circuits: tuple[str, ...] = ()  # circuits whose peerings use it (the filter's `peerings`)


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything read from the files, by kind."""

    circuits: tuple[CircuitFacts, ...] = ()
    peerings: tuple[PeeringFacts, ...] = ()
    route_filters: tuple[RouteFilterFacts, ...] = ()
    communities: BgpCommunities | None = None
    communities_file: str | None = None
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- reading files


def read_files(paths: Iterable[str | os.PathLike[str]]) -> Facts:
    circuits: list[CircuitFacts] = []
    peerings: list[PeeringFacts] = []
    filters: list[RouteFilterFacts] = []
    communities: BgpCommunities | None = None
    communities_file: str | None = None
    notes: list[str] = []
    for p in paths:
        source = os.fspath(p)
        doc = _load_json(source)
        if service_entries(doc) is not None:
            try:
                communities = BgpCommunities.from_document(doc, source=source)
            except CommunitiesError as e:
                raise FactsError(str(e)) from None
            communities_file = source
            continue
        items = _resources(doc, source)
        for item in items:
            kind = _kind(item)
            if kind == "circuit":
                circuits.append(_circuit(item, source))
                peerings += [
                    _peering(_flat(pe), source, circuit=circuits[-1].name, notes=notes)
                    for pe in item.get("peerings") or ()
                    if isinstance(pe, dict) and _is_microsoft_peering(_flat(pe))
                ]
            elif kind == "peering":
                if _is_microsoft_peering(item):
                    peerings.append(_peering(item, source, notes=notes))
                else:
                    notes.append(
                        f"{source}: {item.get('name') or 'a peering'} is not Microsoft peering: skipped"
                    )
            elif kind == "route-filter":
                filters.append(_route_filter(item, source))
            else:
                raise FactsError(
                    f"{source}: neither an ExpressRoute circuit, a peering, a route filter nor "
                    f"the list of BGP service communities; save the output of: {_COMMANDS}"
                )
    return Facts(
        circuits=tuple(circuits),
        peerings=tuple(_merge_peerings(peerings)),
        route_filters=tuple(filters),
        communities=communities,
        communities_file=communities_file,
        notes=tuple(notes),
    )


def _load_json(source: str) -> Any:
    try:
        with open(source, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise FactsError(f"{source}: cannot read it: {e.strerror or e}") from None
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise FactsError(
            f"{source}: not UTF-8 text; save the az output as JSON (-o json)"
        ) from None
    except json.JSONDecodeError as e:
        raise FactsError(
            f"{source}: not JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
            "run the az command with -o json and save its output unchanged"
        ) from None


def _flat(obj: dict[str, Any]) -> dict[str, Any]:
    """REST/ARM objects keep their facts under `properties`; the CLI prints them at the top."""
    props = obj.get("properties")
    return (
        {**props, **{k: v for k, v in obj.items() if k != "properties"}}
        if isinstance(props, dict)
        else obj
    )


def _resources(doc: Any, source: str) -> list[dict[str, Any]]:
    """The resource objects of one document: one object, a list, REST's {"value": [...]},
    or an ARM template's `resources`."""
    if isinstance(doc, dict) and isinstance(doc.get("resources"), list):
        return [_flat(_arm_names(r, doc, source)) for r in doc["resources"] if isinstance(r, dict)]
    if isinstance(doc, dict) and isinstance(doc.get("value"), list):
        doc = doc["value"]
    if isinstance(doc, dict):
        return [_flat(doc)]
    if isinstance(doc, list) and doc and all(isinstance(x, dict) for x in doc):
        return [_flat(x) for x in doc]
    raise FactsError(
        f"{source}: neither an ExpressRoute circuit, a peering, a route filter nor the list "
        f"of BGP service communities; save the output of: {_COMMANDS}"
    )


_PARAM = re.compile(r"^\[parameters\('([^']+)'\)\]$")


def _arm_names(resource: dict[str, Any], template: dict[str, Any], source: str) -> dict[str, Any]:
    """An exported template names resources (and the route filter's id) by parameter: use
    each parameter's default value."""
    params = template.get("parameters") or {}

    def resolve(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, key) for v in value]
        if not isinstance(value, str) or not value.startswith("[") or key == "dependsOn":
            return value
        m = _PARAM.match(value)
        default = params.get(m.group(1), {}).get("defaultValue") if m else None
        if key in ("name", "id") and not isinstance(default, str):
            raise FactsError(
                f"{source}: {key} {value} is a template expression erpath cannot evaluate; "
                "save the az command's JSON output instead (az network express-route show -o json)"
            )
        return default if isinstance(default, str) else value

    return resolve(resource, "")


def _kind(item: dict[str, Any]) -> str | None:
    kind = str(item.get("type") or "").lower()
    rid = str(item.get("id") or "")
    if kind == CIRCUIT_TYPE or (
        not kind and ("serviceProviderProperties" in item or "circuitProvisioningState" in item)
    ):
        return "circuit"
    if kind == PEERING_TYPE or "peeringType" in item:
        return "peering"
    if kind == FILTER_TYPE or ("rules" in item and _FILTER_ID.search(rid)):
        return "route-filter"
    return None


def _is_microsoft_peering(item: dict[str, Any]) -> bool:
    return (item.get("peeringType") or item.get("name")) == "MicrosoftPeering"


# --------------------------------------------------------------------------- circuits


def _circuit(item: dict[str, Any], source: str) -> CircuitFacts:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise FactsError(f"{source}: the circuit has no name")
    provider = item.get("serviceProviderProperties")
    location = provider.get("peeringLocation") if isinstance(provider, dict) else None
    sku = item.get("sku") if isinstance(item.get("sku"), dict) else {}
    tier = sku.get("tier") or (sku.get("name") or "").partition("_")[0] or None
    return CircuitFacts(name=name, location=location or None, sku=_sku(tier, name, source))


def _sku(tier: str | None, circuit: str, source: str) -> Sku | None:
    if tier is None:
        return None
    t = tier.lower()
    if t in ("standard", "premium"):
        return t  # type: ignore[return-value]
    if t == "local":
        raise FactsError(
            f"{source}: circuit {circuit} is ExpressRoute Local: it reaches only the Azure "
            "regions at its own peering location, which erpath does not model (only Standard "
            "and Premium); leave this circuit out of the import and write its [[circuit]] "
            'by hand with sku = "standard" if it is used for Microsoft peering'
        )
    raise FactsError(
        f"{source}: circuit {circuit} has SKU tier {tier!r}; erpath knows Standard and Premium"
    )


# --------------------------------------------------------------------------- peerings


def _peering(
    item: dict[str, Any], source: str, *, circuit: str | None = None, notes: list[str]
) -> PeeringFacts:
    circuit = circuit or _circuit_of(item)
    if circuit is None:
        raise FactsError(
            f"{source}: the peering's id names no circuit (/expressRouteCircuits/NAME/peerings/...); "
            "save `az network express-route peering show` unchanged"
        )
    config = item.get("microsoftPeeringConfig") or {}
    v6 = item.get("ipv6PeeringConfig") or {}
    v6_config = v6.get("microsoftPeeringConfig") or {} if isinstance(v6, dict) else {}
    asn = item.get("peerAsn") or item.get("peerASN")
    return PeeringFacts(
        circuit=circuit,
        primary_subnet=_prefix(
            item.get("primaryPeerAddressPrefix"), source, "primaryPeerAddressPrefix"
        ),
        secondary_subnet=_prefix(
            item.get("secondaryPeerAddressPrefix"), source, "secondaryPeerAddressPrefix"
        ),
        primary_subnet_v6=_prefix(
            v6.get("primaryPeerAddressPrefix"), source, "ipv6 primaryPeerAddressPrefix"
        ),
        secondary_subnet_v6=_prefix(
            v6.get("secondaryPeerAddressPrefix"), source, "ipv6 secondaryPeerAddressPrefix"
        ),
        advertised_prefixes=tuple(
            _prefix(p, source, "advertisedPublicPrefixes")
            for p in config.get("advertisedPublicPrefixes") or ()
        ),
        advertised_prefixes_v6=tuple(
            _prefix(p, source, "ipv6 advertisedPublicPrefixes")
            for p in v6_config.get("advertisedPublicPrefixes") or ()
        ),
        peer_asn=int(asn) if isinstance(asn, int | str) and str(asn).isdigit() else None,
        route_filter=_filter_name(item.get("routeFilter")),
        route_filter_v6=_filter_name(v6.get("routeFilter") if isinstance(v6, dict) else None),
    )


def _circuit_of(item: dict[str, Any]) -> str | None:
    m = _CIRCUIT_ID.search(str(item.get("id") or ""))
    if m:
        return m.group(1)
    name = item.get("name")  # an ARM template's child resource: "CIRCUIT/MicrosoftPeering"
    return name.split("/")[0] if isinstance(name, str) and "/" in name else None


def _filter_name(ref: Any) -> str | None:
    if isinstance(ref, dict):
        m = _FILTER_ID.search(str(ref.get("id") or ""))
        return m.group(1) if m else None
    return None


def _prefix(value: Any, source: str, key: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise FactsError(f"{source}: {key} {value!r} is not an IP prefix") from None


def _merge_peerings(peerings: list[PeeringFacts]) -> list[PeeringFacts]:
    """One per circuit: a later file's facts win (circuit show, then peering show)."""
    out: dict[str, PeeringFacts] = {}
    for p in peerings:
        out[p.circuit] = p
    return list(out.values())


# --------------------------------------------------------------------------- route filters


def _route_filter(item: dict[str, Any], source: str) -> RouteFilterFacts:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise FactsError(f"{source}: the route filter has no name")
    communities: list[str] = []
    for rule in item.get("rules") or ():
        if not isinstance(rule, dict):
            continue
        rule = _flat(rule)
        if str(rule.get("access", "")).lower() != "allow":
            continue
        if str(rule.get("routeFilterRuleType", "Community")).lower() != "community":
            continue
        for c in rule.get("communities") or ():
            if isinstance(c, str) and c not in communities:
                communities.append(c)
    circuits = []
    for pe in item.get("peerings") or ():
        c = _circuit_of(_flat(pe)) if isinstance(pe, dict) else None
        if c and c not in circuits:
            circuits.append(c)
    return RouteFilterFacts(name=name, communities=tuple(communities), circuits=tuple(circuits))
