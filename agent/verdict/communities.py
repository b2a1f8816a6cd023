"""Microsoft peering's BGP communities: which community (service, region) a destination is in.

On Microsoft peering a circuit's route filter decides what Microsoft
advertises over it: one BGP community per service and per Azure region
(12076:51xxx).  Azure lists them with their prefixes in
`az network route-filter rule list-service-communities` (REST:
bgpServiceCommunities): per service, `bgpCommunities` entries with
`communityValue`, `communityName`, `communityPrefixes`,
`serviceSupportedRegion`, `serviceGroup` and `isAuthorizedToUse`.  This
module reads that document -- the CLI's flattened list, or the REST
`{"value": [...]}` with each service under `properties` -- and answers "which
communities hold this address", longest prefix first.

Regional communities say "Global" in `serviceSupportedRegion`; their region
is in the name ("Azure West Europe"), so it is taken from there and
normalised as service tags write it ("westeurope").
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.verdict import geography

_COMMUNITY = re.compile(r"^\d{1,5}:\d{1,5}$")
# A sane file names at least this many communities: fewer is a truncated
# download or the output of another command.
MIN_COMMUNITIES = 1


class CommunitiesError(ValueError):
    """A communities file that cannot be used; `problem` says what and how to fix it."""

    def __init__(self, source: str, problem: str):
        self.source, self.problem = source, problem
        super().__init__(f"BGP communities file {source}: {problem}")


@dataclass(frozen=True, slots=True)
class Community:
    """One BGP community Microsoft tags its routes with on Microsoft peering."""

    value: str  # "12076:51002"
    name: str  # "Azure West Europe"
    service: str  # the service entry's name: "AzureWestEurope", "Exchange"
    group: str | None  # serviceGroup: "Azure", "O365"
    region: str | None  # "westeurope" for a regional community, None for a global one
    authorized: bool  # isAuthorizedToUse: may this subscription's route filters use it
    prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CommunityMatch:
    community: Community
    prefix: str  # the community's prefix that holds the address


def is_community(text: str) -> bool:
    return bool(_COMMUNITY.match(text))


def region_key(text: str) -> str:
    """A region as service tags write it: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _region(entry: dict[str, Any], service: str) -> str | None:
    supported = entry.get("serviceSupportedRegion")
    if isinstance(supported, str) and supported and supported.lower() != "global":
        return region_key(supported)
    for text in (entry.get("communityName"), service):
        if isinstance(text, str) and re.match(r"^Azure\s*[A-Z]", text):
            rest = region_key(text[len("Azure") :])
            # Only a name that is an Azure region: "Azure Global", "AzureCloud"
            # and service communities like "Azure Active Directory" are none.
            if rest and geography.region_geography(rest) is not None:
                return rest
    return None


@dataclass(frozen=True, slots=True, eq=False)
class BgpCommunities:
    """A loaded communities document: immutable, shared between threads."""

    source: str
    communities: dict[str, Community]  # by value
    # per IP version: prefix length -> network (int) -> communities, longest length first
    _index: dict[int, tuple[tuple[int, dict[int, tuple[Community, ...]]], ...]]

    @property
    def prefix_count(self) -> int:
        return sum(len(c.prefixes) for c in self.communities.values())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BgpCommunities:
        source = os.fspath(path)
        try:
            with open(source, "rb") as f:
                doc = json.loads(f.read())
        except OSError as e:
            raise CommunitiesError(source, f"cannot read it: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise CommunitiesError(source, "is not UTF-8 text (not a JSON file)") from None
        except json.JSONDecodeError as e:
            raise CommunitiesError(
                source, f"is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
            ) from None
        return cls.from_document(doc, source=source)

    @classmethod
    def from_document(cls, doc: Any, *, source: str = "<document>") -> BgpCommunities:
        services = service_entries(doc)
        if services is None:
            raise CommunitiesError(
                source,
                "is not a list of BGP service communities; save the output of "
                "`az network route-filter rule list-service-communities -o json`",
            )
        found: dict[str, Community] = {}
        for service in services:
            name = service.get("serviceName") or service.get("name") or ""
            for entry in service.get("bgpCommunities") or ():
                if not isinstance(entry, dict):
                    raise CommunitiesError(
                        source, f"service {name}: a bgpCommunities entry is not an object"
                    )
                value = entry.get("communityValue")
                if not isinstance(value, str) or not is_community(value):
                    raise CommunitiesError(
                        source, f"service {name}: communityValue {value!r} is not ASN:value"
                    )
                prefixes = entry.get("communityPrefixes") or []
                if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
                    raise CommunitiesError(
                        source, f"community {value}: communityPrefixes is not a list of prefixes"
                    )
                for p in prefixes:
                    try:
                        ipaddress.ip_network(p, strict=False)
                    except ValueError:
                        raise CommunitiesError(
                            source, f"community {value}: {p!r} is not an IP prefix"
                        ) from None
                found[value] = Community(
                    value=value,
                    name=str(entry.get("communityName") or name),
                    service=str(name),
                    group=entry.get("serviceGroup") or None,
                    region=_region(entry, str(name)),
                    authorized=entry.get("isAuthorizedToUse") is not False,
                    prefixes=tuple(prefixes),
                )
        if len(found) < MIN_COMMUNITIES:
            raise CommunitiesError(source, "lists no BGP community; the file is empty or truncated")
        return cls(source, found, _build(found.values()))

    def get(self, value: str) -> Community | None:
        return self.communities.get(value)

    def lookup(self, address: str) -> tuple[CommunityMatch, ...]:
        """Every community holding `address`, longest prefix first (one match per community)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return ()
        bits = ip.max_prefixlen
        value = int(ip)
        found: dict[str, CommunityMatch] = {}
        for length, table in self._index.get(ip.version, ()):
            for c in table.get(value >> (bits - length), ()):
                if c.value not in found:
                    net = ipaddress.ip_network(
                        ((value >> (bits - length)) << (bits - length), length)
                    )
                    found[c.value] = CommunityMatch(c, str(net))
        return tuple(found.values())


def service_entries(doc: Any) -> list[dict[str, Any]] | None:
    """The service entries of a CLI list or a REST `{"value": [...]}`, flattened; None if not that."""
    items = doc.get("value") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not items:
        return None
    out = []
    for item in items:
        if not isinstance(item, dict):
            return None
        props = item.get("properties")
        flat = {**item, **props} if isinstance(props, dict) else item
        if not isinstance(flat.get("bgpCommunities"), list):
            return None
        out.append(flat)
    return out


def _build(communities: Iterable[Community]):
    tables: dict[int, dict[int, dict[int, list[Community]]]] = {}
    for c in communities:
        for p in c.prefixes:
            net = ipaddress.ip_network(p, strict=False)
            by_len = tables.setdefault(net.version, {})
            key = int(net.network_address) >> (net.max_prefixlen - net.prefixlen)
            by_len.setdefault(net.prefixlen, {}).setdefault(key, []).append(c)
    return {
        version: tuple(
            (length, {k: tuple(v) for k, v in by_len[length].items()})
            for length in sorted(by_len, reverse=True)
        )
        for version, by_len in tables.items()
    }
