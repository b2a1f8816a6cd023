"""The geopolitical region table behind the Premium check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.verdict import geography
from agent.verdict.geography import (
    PUBLISHED,
    Placement,
    location_geography,
    normalise,
    region_geography,
    standard_reaches,
)

REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "ServiceTags_Public.json"


@pytest.mark.parametrize(
    "region, geography_, basis",
    [
        ("westeurope", "Europe", "published"),
        ("West Europe", "Europe", "published"),
        ("WestEurope", "Europe", "published"),  # service tag name suffix
        ("germanywc", "Europe", "published"),  # service tags file's own id
        ("centralfrance", "Europe", "published"),
        ("switzerlandn", "Europe", "published"),
        ("eastus", "North America", "published"),
        ("canadaeast", "North America", "published"),
        ("westindia", "India", "published"),  # the table says "India West"
        ("australiacentral", "Australia Government", "published"),
        ("australiaeast", "Oceania", "published"),
        ("koreasouth", "South Korea", "published"),
        ("spaincentral", "Europe", "local-region"),
        ("mexicocentral", "North America", "local-region"),
        ("brazilse", "South America", "local-region"),
        ("newzealandnorth", "Oceania", "local-region"),
        ("belgiumcentral", "Europe", "by-country"),
        ("chilec", "South America", "by-country"),
    ],
)
def test_region_placement(region, geography_, basis):
    assert region_geography(region) == Placement(geography_, basis)


@pytest.mark.parametrize(
    "location, geography_",
    [
        ("Amsterdam", "Europe"),
        ("amsterdam2", "Europe"),
        ("Newport(Wales)", "Europe"),
        ("Newport", "Europe"),
        ("Washington DC", "North America"),
        ("Queretaro", "North America"),
        ("Sao Paulo", "South America"),
        ("Tokyo3", "Japan"),
        ("Canberra2", "Australia Government"),
        ("Sydney", "Oceania"),
        ("Vienna", "Europe"),
        ("Portland", "North America"),
    ],
)
def test_location_placement(location, geography_):
    assert location_geography(location).geography == geography_


def test_unknown_names():
    assert region_geography("atlantis") is None
    assert location_geography("Atlantis") is None
    assert standard_reaches("Atlantis", "westeurope") is None
    assert standard_reaches("Amsterdam", "usstagec") is None


@pytest.mark.parametrize(
    "location, region, reaches",
    [
        ("Amsterdam", "westeurope", True),
        ("Amsterdam", "northeurope", True),
        ("London", "germanywc", True),
        ("Amsterdam", "eastus", False),  # the planning guide's example
        ("Washington DC", "westeurope", False),
        ("Sydney", "australiacentral", False),  # Australia Government is its own region
        ("Canberra", "australiacentral2", True),
    ],
)
def test_standard_reaches(location, region, reaches):
    assert standard_reaches(location, region) is reaches


def test_published_table_has_no_duplicates():
    seen_regions: set[str] = set()
    seen_locations: set[str] = set()
    for regions, locations in PUBLISHED.values():
        for r in regions:
            assert normalise(r) not in seen_regions, r
            seen_regions.add(normalise(r))
        for loc in locations:
            assert normalise(loc) not in seen_locations, loc
            seen_locations.add(normalise(loc))


def test_later_layers_never_override_the_published_table():
    for r in (*geography.LOCAL_REGION, *geography.BY_COUNTRY_REGIONS):
        assert all(
            normalise(r) not in {normalise(x) for x in rs} for rs, _ in PUBLISHED.values()
        ), r


@pytest.mark.skipif(not REAL.is_file(), reason=f"the real service tags file is not at {REAL}")
def test_every_public_region_in_the_real_file_is_placed():
    """Staging regions (usstagec, usstagee) are Microsoft-internal and stay unplaced."""
    doc = json.loads(REAL.read_text())
    regions = {v["properties"]["region"] for v in doc["values"]} - {""}
    unplaced = sorted(r for r in regions if region_geography(r) is None)
    assert unplaced == ["usstagec", "usstagee"]


def test_source_is_cited():
    assert "expressroute-locations-providers" in geography.SOURCE_URL
    assert "expressroute-locations-providers" in (geography.__doc__ or "")
