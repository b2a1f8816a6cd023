"""Route filters in the lab: Microsoft peering's BGP communities, and what a filter lets through.

On Microsoft peering Microsoft advertises over a circuit only the prefixes of
the BGP communities the circuit's route filter allows.  The lab's
"Microsoft" (198.19/16) tags its prefixes with three communities, written
beside the agents' configs in the shape of
`az network route-filter rule list-service-communities -o json` (a small
synthetic list in the lab's plan, never Azure's real one):

- Azure West Europe (12076:51002): the Power Platform's West Europe
  prefixes, Azure Monitor and the azure-side VNet;
- Azure North Europe (12076:51003): the Power Platform's North Europe
  region (northeurope.api.powerplatform.com);
- Azure Active Directory (12076:5060): sign-in and Graph.

A scenario's `route_filters` (circuit -> communities its filter allows) cuts
what the CE and the core learn over that circuit to those communities'
prefixes; the agents' configs for the scenario say the same (tests/lab/
agentconfig.py), so the verdict can name the community that is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .plan import ER_RECEIVED_PREFIXES

FILE = Path(__file__).with_name("agents") / "bgp_communities_lab.json"
ROUTE_FILTER = "rf-lab"  # one filter on both circuits' Microsoft peerings


@dataclass(frozen=True, slots=True)
class LabCommunity:
    service: str  # the service entry's name, as Azure lists it
    value: str
    name: str
    prefixes: tuple[str, ...]


WEST_EUROPE = LabCommunity(
    "AzureWestEurope",
    "12076:51002",
    "Azure West Europe",
    ("198.19.16.0/24", "198.19.18.0/24", "198.19.24.0/24", "198.19.32.0/24"),
)
NORTH_EUROPE = LabCommunity(
    "AzureNorthEurope", "12076:51003", "Azure North Europe", ("198.19.17.0/24",)
)
ACTIVE_DIRECTORY = LabCommunity(
    "AzureActiveDirectory", "12076:5060", "Azure Active Directory", ("198.19.20.0/24",)
)
COMMUNITIES: tuple[LabCommunity, ...] = (WEST_EUROPE, NORTH_EUROPE, ACTIVE_DIRECTORY)
ALL_ALLOWED: tuple[str, ...] = tuple(c.value for c in COMMUNITIES)
# The filter of route-filter-missing: everything but the Power Platform's North Europe region.
WITHOUT_NORTH_EUROPE: tuple[str, ...] = (WEST_EUROPE.value, ACTIVE_DIRECTORY.value)
# The Power Platform target in that region, and its address.
NORTH_EUROPE_TARGET = "northeurope.api.powerplatform.com"
NORTH_EUROPE_ADDRESS = "198.19.17.10"


def received(allowed: tuple[str, ...] | None) -> tuple[str, ...]:
    """The Microsoft prefixes a circuit learns when its filter allows `allowed` (None: no filter
    modelled, everything Microsoft advertises on ExpressRoute), in the plan's order."""
    if allowed is None:
        return ER_RECEIVED_PREFIXES
    let_through = {p for c in COMMUNITIES if c.value in allowed for p in c.prefixes}
    return tuple(p for p in ER_RECEIVED_PREFIXES if p in let_through)


def document() -> list[dict]:
    """The lab's communities as `az network route-filter rule list-service-communities` prints them."""
    return [
        {
            "bgpCommunities": [
                {
                    "communityName": c.name,
                    "communityPrefixes": list(c.prefixes),
                    "communityValue": c.value,
                    "isAuthorizedToUse": True,
                    "serviceGroup": "Azure",
                    "serviceSupportedRegion": "Global",
                }
            ],
            "id": (
                "/subscriptions/00000000-0000-0000-0000-000000000000/providers/"
                f"Microsoft.Network/bgpServiceCommunities/{c.service}"
            ),
            "name": c.service,
            "serviceName": c.service,
            "type": "Microsoft.Network/bgpServiceCommunities",
        }
        for c in COMMUNITIES
    ]


def write(path: str | Path = FILE) -> None:
    with open(path, "w") as f:
        json.dump(document(), f, indent=2)
        f.write("\n")
