"""Service tags documents for tests, in the layout of Microsoft's ServiceTags_Public_*.json."""

from __future__ import annotations


def tag_entry(name: str, prefixes: list[str], region: str = "", **properties: object) -> dict:
    """One entry of `values`: Microsoft's id is the tag's name."""
    return {
        "name": name,
        "id": name,
        "properties": {"region": region, "addressPrefixes": prefixes, **properties},
    }


def tags_document(*entries: dict, change: int = 1) -> dict:
    """A document of the public cloud with these entries and changeNumber `change`."""
    return {"changeNumber": change, "cloud": "Public", "values": list(entries)}
