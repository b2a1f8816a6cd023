"""What ExpressRoute never carries (CDN, Front Door), Traffic Manager names, and what Microsoft's network looks like.

Microsoft peering carries Power Platform's own prefixes, but static content
comes from Azure CDN / Front Door (`*.azureedge.net`, `*.azurefd.net`,
`res.cdn.office.net`) and third-party CDNs: those go over the internet
whatever the routing says, and these names and service tags make a target
"cdn".  Traffic Manager is DNS only: its names are recognised so the
verdict can say the endpoint it handed out decides the path.

The suffix list is built in; the orchestrator may pass more (a customer's
own CDN names) through `classify(..., cdn_suffixes=...)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# DNS suffixes of content delivery and global load balancing.
CDN_SUFFIXES: tuple[str, ...] = (
    "azureedge.net",  # Azure CDN (and Front Door classic endpoints)
    "azurefd.net",  # Azure Front Door
    "t-msedge.net",  # Front Door edge names at the end of *.azurefd.net chains
    "res.cdn.office.net",  # Microsoft 365 / Power Platform static resources
    "cdn.office.net",
    "msecnd.net",  # legacy Azure CDN (vo.msecnd.net)
    "akamaized.net",  # Akamai, used for some Microsoft static content
    "akamaiedge.net",
    "akamai.net",
    "edgekey.net",
    "edgesuite.net",
)
# Traffic Manager is DNS only: the endpoint it hands out is reached however
# that endpoint is routed (over ExpressRoute when it is in a carried prefix).
TRAFFIC_MANAGER_SUFFIXES: tuple[str, ...] = ("trafficmanager.net",)

# Service tags whose addresses are CDN / Front Door edges clients connect to.
# (AzureFrontDoor.Backend is Front Door's source range towards origins, not
# an address clients reach.)
CDN_SERVICE_TAGS: frozenset[str] = frozenset(
    {"AzureFrontDoor.Frontend", "AzureFrontDoor.FirstParty", "AzureFrontDoor.MicrosoftSecurity"}
)

# Microsoft's ASNs: 12076 is ExpressRoute (the MSEEs' side of Microsoft
# peering), 8075 the global network every path into Microsoft crosses.
ASN_EXPRESSROUTE = 12076
ASN_MICROSOFT = 8075
MICROSOFT_PTR_SUFFIXES: tuple[str, ...] = ("ntwk.msn.net", "msedge.net")


@dataclass(frozen=True, slots=True)
class NameMatch:
    """A DNS name that matched a CDN or Traffic Manager suffix."""

    name: str
    suffix: str
    last: bool  # the name is the end of the CNAME chain (what was actually resolved)
    traffic_manager: bool


def _clean(name: str) -> str:
    return name.lower().rstrip(".")


def name_has_suffix(name: str, suffix: str) -> bool:
    name, suffix = _clean(name), _clean(suffix)
    return name == suffix or name.endswith("." + suffix)


def cdn_names(names: Iterable[str], extra_suffixes: Iterable[str] = ()) -> tuple[NameMatch, ...]:
    """Every name in a CNAME chain (target name first) that is a CDN or Traffic Manager name."""
    names = [n for n in names if n]
    cdn = (*CDN_SUFFIXES, *extra_suffixes)
    out: list[NameMatch] = []
    for i, name in enumerate(names):
        last = i == len(names) - 1
        for suffix in (*cdn, *TRAFFIC_MANAGER_SUFFIXES):
            if name_has_suffix(name, suffix):
                out.append(
                    NameMatch(_clean(name), suffix, last, suffix in TRAFFIC_MANAGER_SUFFIXES)
                )
                break
    return tuple(out)


def is_microsoft_ptr(ptr: str | None) -> str | None:
    """The Microsoft backbone suffix a hop's PTR ends in, if any."""
    if not ptr:
        return None
    return next((s for s in MICROSOFT_PTR_SUFFIXES if name_has_suffix(ptr, s)), None)
