"""A service-tags file for the lab's prefixes, in Azure's ServiceTags_Public format.

Same shape as the weekly download ({"changeNumber", "cloud", "values": [{"name",
"id", "properties": {...}}]}), with global and regional entries, so code that
loads the real file loads this one unchanged.
"""

from __future__ import annotations

import ipaddress
import json

from . import plan

CHANGE_NUMBER = 1
# Region ids as in the real file.
REGION_IDS = {"westeurope": 18, "northeurope": 17}
_REGION_SUFFIX = {"westeurope": "WestEurope", "northeurope": "NorthEurope"}
_FEATURES = ["API", "NSG", "UDR", "FW"]


def _entry(name: str, region: str, system_service: str, prefixes: list[str]) -> dict:
    return {
        "name": name,
        "id": name,
        "properties": {
            "changeNumber": CHANGE_NUMBER,
            "region": region,
            "regionId": REGION_IDS.get(region, 0),
            "platform": "Azure",
            "systemService": system_service,
            "addressPrefixes": sorted(prefixes, key=_sort_key),
            "networkFeatures": list(_FEATURES),
        },
    }


def _sort_key(prefix: str) -> tuple[int, ...]:
    """IPv4 first, then IPv6, each in address order (as Azure's file lists them)."""
    net = ipaddress.ip_network(prefix)
    return (net.version, int(net.network_address), net.prefixlen)


def _blocks() -> dict[str, tuple[str, str]]:
    """Every service block, both families (the IPv6 twins of the IPv4 /24s)."""
    return {**plan.service_blocks(), **plan.SERVICE_BLOCKS6}


def document() -> dict:
    by_tag: dict[str, list[str]] = {}
    by_tag_region: dict[tuple[str, str], list[str]] = {}
    for prefix, (tag, region) in _blocks().items():
        if tag != "AzureCloud":
            by_tag.setdefault(tag, []).append(prefix)
            if region:
                by_tag_region.setdefault((tag, region), []).append(prefix)
        if region:
            by_tag_region.setdefault(("AzureCloud", region), []).append(prefix)
    # AzureCloud covers every Microsoft prefix, including the Front Door one.
    azure_cloud = sorted(_blocks(), key=_sort_key)
    values = [_entry("AzureCloud", "", "", azure_cloud)]
    for (tag, region), prefixes in sorted(by_tag_region.items()):
        if tag == "AzureCloud":
            values.append(_entry(f"AzureCloud.{region}", region, "", prefixes))
        else:
            values.append(_entry(f"{tag}.{_REGION_SUFFIX[region]}", region, tag, prefixes))
    for tag, prefixes in sorted(by_tag.items()):
        service = (
            ""
            if tag == "AzureFrontDoor.Frontend"
            else tag.replace("AzureActiveDirectory", "AzureAD")
        )
        values.append(_entry(tag, "", service, prefixes))
    values.sort(key=lambda v: v["name"].lower())
    return {"changeNumber": CHANGE_NUMBER, "cloud": "Public", "values": values}


def write(path: str) -> None:
    with open(path, "w") as f:
        json.dump(document(), f, indent=2)
        f.write("\n")
