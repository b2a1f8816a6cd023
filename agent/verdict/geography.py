"""Which ExpressRoute geopolitical region an Azure region or a peering location is in.

A Standard circuit reaches only the Azure regions of the geopolitical region
of its peering location; anything else needs the Premium add-on (the
planning guide: a European circuit used for a US tenant must be Premium).
The Premium check in agent.findings needs both sides placed on this map.

Source, placed here so a reviewer can diff it against Microsoft's page:
"Azure regions to ExpressRoute locations within a geopolitical region",
in "ExpressRoute connectivity providers / peering locations" —
https://learn.microsoft.com/azure/expressroute/expressroute-locations-providers#locations
(MicrosoftDocs/azure-docs, includes/expressroute-azure-regions-geopolitical-region.md,
ms.date 2024-04-05).  That table lags new regions, so two more layers fill
the gaps, each marked with its basis so evidence can say how sure it is:

- "local-region": a newer region placed by the "Local Azure regions" column of
  the same page's provider table (2026-04 version): e.g. Madrid serves Spain
  Central, Madrid is in Europe, so Spain Central is in Europe.
- "by-country": regions and peering locations on neither table, placed by the
  country they are in (e.g. Belgium Central, Vienna).

Names are matched after normalising (lower case, letters and digits only), so
"West Europe", "westeurope" (service tag `properties.region`) and
"WestEurope" (service tag name suffix) are one region; the service tags
file's abbreviated ids ("germanywc", "centralfrance", "norwaye") are aliased.
National clouds (US Gov, China) are left out: Microsoft does not connect
them to the public cloud's circuits at all.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Basis = Literal["published", "local-region", "by-country"]

SOURCE_URL = (
    "https://learn.microsoft.com/azure/expressroute/expressroute-locations-providers#locations"
)


@dataclass(frozen=True, slots=True)
class Placement:
    """A region or peering location placed in a geopolitical region, and on what basis."""

    geography: str
    basis: Basis


# Microsoft's table, row by row: geopolitical region -> (Azure regions,
# ExpressRoute peering locations), spelt as published.
PUBLISHED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Australia Government": (
        ("Australia Central", "Australia Central 2"),
        ("Canberra", "Canberra2"),
    ),
    "Europe": (
        (
            "France Central",
            "France South",
            "Germany North",
            "Germany West Central",
            "Italy North",
            "North Europe",
            "Norway East",
            "Norway West",
            "Poland Central",
            "Sweden Central",
            "Switzerland North",
            "Switzerland West",
            "UK West",
            "UK South",
            "West Europe",
        ),
        (
            "Amsterdam",
            "Amsterdam2",
            "Berlin",
            "Copenhagen",
            "Dublin",
            "Dublin2",
            "Frankfurt",
            "Frankfurt2",
            "Geneva",
            "London",
            "London2",
            "Madrid",
            "Madrid2",
            "Marseille",
            "Milan",
            "Milan2",
            "Munich",
            "Newport(Wales)",
            "Oslo",
            "Paris",
            "Paris2",
            "Stavanger",
            "Stockholm",
            "Warsaw",
            "Zurich",
            "Zurich2",
        ),
    ),
    "North America": (
        (
            "East US",
            "West US",
            "East US 2",
            "West US 2",
            "West US 3",
            "Central US",
            "South Central US",
            "North Central US",
            "West Central US",
            "Canada Central",
            "Canada East",
        ),
        (
            "Atlanta",
            "Chicago",
            "Chicago2",
            "Dallas",
            "Denver",
            "Las Vegas",
            "Los Angeles",
            "Los Angeles2",
            "Miami",
            "Minneapolis",
            "Montreal",
            "New York",
            "Phoenix",
            "Quebec City",
            "Queretaro(Mexico)",
            "Quincy",
            "San Antonio",
            "Seattle",
            "Silicon Valley",
            "Silicon Valley2",
            "Toronto",
            "Toronto2",
            "Vancouver",
            "Washington DC",
            "Washington DC2",
        ),
    ),
    "Asia": (
        ("East Asia", "Southeast Asia"),
        (
            "Bangkok",
            "Hong Kong",
            "Hong Kong2",
            "Jakarta",
            "Kuala Lumpur",
            "Singapore",
            "Singapore2",
            "Taipei",
        ),
    ),
    "India": (
        ("India West", "India Central", "India South"),
        ("Chennai", "Chennai2", "Mumbai", "Mumbai2", "Pune"),
    ),
    "Israel": (("Israel Central",), ("Tel Aviv", "Tel Aviv2")),
    "Japan": (("Japan West", "Japan East"), ("Osaka", "Tokyo", "Tokyo2", "Tokyo3")),
    "Oceania": (
        ("Australia East", "Australia Southeast"),
        ("Auckland", "Melbourne", "Perth", "Sydney", "Sydney2"),
    ),
    "South Korea": (("Korea Central", "Korea South"), ("Busan", "Seoul", "Seoul2")),
    "UAE": (("UAE Central", "UAE North"), ("Abu Dhabi", "Dubai", "Dubai2")),
    "South Africa": (
        ("South Africa West", "South Africa North"),
        ("Cape Town", "Johannesburg"),
    ),
    "South America": (
        ("Brazil South",),
        ("Campinas", "Rio de Janeiro", "Sao Paulo", "Sao Paulo2", "Santiago"),
    ),
    "Qatar": (("Qatar Central",), ("Doha", "Doha2")),
}

# Regions missing from the published table, placed through a peering location
# that serves them locally ("Local Azure regions" column): region -> (location
# that serves it, that location's geopolitical region).
LOCAL_REGION: dict[str, tuple[str, str]] = {
    "Spain Central": ("Madrid", "Europe"),
    "Mexico Central": ("Queretaro(Mexico)", "North America"),
    "Indonesia Central": ("Jakarta", "Asia"),
    "Malaysia West": ("Kuala Lumpur", "Asia"),
    "New Zealand North": ("Auckland", "Oceania"),
    "Taiwan North": ("Taipei", "Asia"),
    "Brazil Southeast": ("Rio de Janeiro", "South America"),
}

# Peering locations on the provider table but not in the geopolitical table,
# placed by the region they serve locally where they have one.
LOCAL_LOCATIONS: dict[str, str] = {
    "Jakarta2": "Asia",  # Indonesia Central
    "Kuala Lumpur2": "Asia",  # Malaysia West
    "Melbourne2": "Oceania",  # Australia Southeast
    "Phoenix2": "North America",  # West US 3
    "Portland": "North America",  # West US 2
    "Stockholm2": "Europe",  # Sweden Central
    "Taipei2": "Asia",  # Taiwan North
}

# Neither table places these; the country they are in does.
BY_COUNTRY_REGIONS: dict[str, str] = {
    "Austria East": "Europe",
    "Belgium Central": "Europe",
    "Sweden South": "Europe",
    "North Europe 2": "Europe",
    "Israel Northwest": "Israel",
    "Malaysia South": "Asia",
    "Taiwan Northwest": "Asia",
    "Chile Central": "South America",  # as Santiago, which the table places there
    "Brazil Northeast": "South America",
    "Jio India Central": "India",
    "Jio India West": "India",
    "South Central US 2": "North America",
    "Southeast US": "North America",
    "Southeast US 3": "North America",
    "Central US EUAP": "North America",
    "East US 2 EUAP": "North America",
}
BY_COUNTRY_LOCATIONS: dict[str, str] = {
    "Atlanta2": "North America",
    "Dallas2": "North America",
    "Brussels": "Europe",
    "Brussels2": "Europe",
    "Vienna": "Europe",
    "Vienna2": "Europe",
}

# The service tags file's own region ids where they differ from the display
# name squeezed ("centralfrance" is France Central); and the published
# table's "India West" style next to Azure's "West India".
_ALIASES: dict[str, str] = {
    "centralfrance": "francecentral",
    "southfrance": "francesouth",
    "germanyn": "germanynorth",
    "germanywc": "germanywestcentral",
    "norwaye": "norwayeast",
    "norwayw": "norwaywest",
    "switzerlandn": "switzerlandnorth",
    "switzerlandw": "switzerlandwest",
    "brazilse": "brazilsoutheast",
    "brazilne": "brazilnortheast",
    "chilec": "chilecentral",
    "indiawest": "westindia",
    "indiacentral": "centralindia",
    "indiasouth": "southindia",
    # peering locations written without the published parenthesis
    "queretaro": "queretaromexico",
    "newport": "newportwales",
}


def normalise(name: str) -> str:
    """'West Europe', 'WestEurope', 'westeurope' -> 'westeurope'; aliases applied.

    Accents are folded: Azure writes 'Sao Paulo', people (and config files)
    write 'São Paulo' or 'Querétaro'.
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    key = re.sub(r"[^a-z0-9]", "", folded.lower())
    return _ALIASES.get(key, key)


def _build() -> tuple[dict[str, Placement], dict[str, Placement]]:
    regions: dict[str, Placement] = {}
    locations: dict[str, Placement] = {}
    for geography, (region_names, location_names) in PUBLISHED.items():
        for r in region_names:
            regions[normalise(r)] = Placement(geography, "published")
        for loc in location_names:
            locations[normalise(loc)] = Placement(geography, "published")
    for r, (_, geography) in LOCAL_REGION.items():
        regions.setdefault(normalise(r), Placement(geography, "local-region"))
    for loc, geography in LOCAL_LOCATIONS.items():
        locations.setdefault(normalise(loc), Placement(geography, "local-region"))
    for r, geography in BY_COUNTRY_REGIONS.items():
        regions.setdefault(normalise(r), Placement(geography, "by-country"))
    for loc, geography in BY_COUNTRY_LOCATIONS.items():
        locations.setdefault(normalise(loc), Placement(geography, "by-country"))
    return regions, locations


_REGIONS, _LOCATIONS = _build()


def region_geography(region: str) -> Placement | None:
    """The geopolitical region of an Azure region ("westeurope", "West Europe"); None if unknown."""
    return _REGIONS.get(normalise(region))


def location_geography(location: str) -> Placement | None:
    """The geopolitical region of a peering location ("Amsterdam"); None if unknown."""
    return _LOCATIONS.get(normalise(location))


def standard_reaches(location: str, region: str) -> bool | None:
    """Can a Standard circuit at `location` reach Azure region `region`?

    None when either side is not on the map: the Premium check then stays
    silent rather than guessing.
    """
    loc = location_geography(location)
    reg = region_geography(region)
    if loc is None or reg is None:
        return None
    return loc.geography == reg.geography
