"""Azure service tags (`ServiceTags_Public_*.json`): load the file, look addresses up.

Microsoft publishes the file weekly; users download it and point erpath at
it.  We read the exact published format (`changeNumber`, `cloud`, `values`:
each tag with `name` and `properties.region` / `properties.addressPrefixes`)
and reject anything else with an error that names the file and the problem,
so a truncated download or the wrong JSON file is caught at load, not at the
first odd verdict.

Lookup returns every tag that contains an address, most specific prefix
first, because the path classifier wants both the global tag
(`PowerPlatformInfra`, `AzureFrontDoor.Frontend`) and the regional one
(`PowerPlatformInfra.WestEurope`, whose region feeds the Premium check), and
they are usually listed with different prefix lengths.

Why a dict per prefix length: the real file has ~54,000 distinct prefixes
in only ~20 IPv4 and ~30 IPv6 lengths, and nested prefixes need no special
handling (sorted intervals would).  Probing every length costs ~9 us, so a
first dict, keyed by the address's block at the family's shortest length,
lists only the lengths that occur inside that block: an address outside
Azure costs one probe, one inside a handful (see
tests/bench/bench_servicetags.py for figures).
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import json
import os
import socket
from dataclasses import dataclass
from typing import Any

_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_BITS = {4: 32, 6: 128}


class ServiceTagsError(ValueError):
    """A service tags file that cannot be used; the message names file and problem."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"service tags file {source}: {problem}")


@dataclass(frozen=True, slots=True)
class TagMatch:
    """One service tag that contains an address, and the prefix that matched."""

    name: str
    region: str | None  # the file's `properties.region` ("westeurope"); None for global tags
    prefix: str


# One prefix length of one family: network (as int, host bits dropped) -> the
# matches of every tag that lists that prefix.  TagMatch objects are built
# once at load: building them per lookup was half the lookup time.
_Table = dict[int, tuple[TagMatch, ...]]


@dataclass(frozen=True, slots=True)
class _Family:
    bits: int
    block_length: int  # the shortest prefix length in the file for this family
    # block (address >> (bits - block_length)) -> the (length, table) pairs
    # with at least one prefix inside that block, longest first
    blocks: dict[int, tuple[tuple[int, _Table], ...]]


@dataclass(frozen=True, slots=True, eq=False)
class ServiceTags:
    """A loaded service tags file; immutable, safe to share between threads."""

    source: str
    change_number: int
    cloud: str
    tag_count: int
    prefix_count: int  # prefix entries in the file, duplicates across tags included
    _families: dict[int, _Family]  # keyed by IP version

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ServiceTags:
        """Read and index a ServiceTags_Public JSON file; raise ServiceTagsError if unusable."""
        source = os.fspath(path)
        try:
            with open(source, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise ServiceTagsError(source, f"cannot read it: {e.strerror or e}") from None
        try:
            with _gc_paused():
                doc = json.loads(raw)
        except UnicodeDecodeError:
            raise ServiceTagsError(
                source, "is not UTF-8 text (not a service tags JSON file)"
            ) from None
        except json.JSONDecodeError as e:
            raise ServiceTagsError(
                source, f"is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
            ) from None
        return cls.from_document(doc, source=source)

    @classmethod
    def from_document(cls, doc: Any, *, source: str = "<document>") -> ServiceTags:
        """Index an already parsed document (tests, or a file fetched some other way)."""

        with _gc_paused():
            return cls._index(doc, source)

    @classmethod
    def _index(cls, doc: Any, source: str) -> ServiceTags:
        def fail(problem: str) -> ServiceTagsError:
            return ServiceTagsError(source, problem)

        if not isinstance(doc, dict):
            raise fail("the top level must be an object with changeNumber, cloud and values")
        change = doc.get("changeNumber")
        if isinstance(change, bool) or not isinstance(change, int):
            raise fail("'changeNumber' must be an integer (is this a ServiceTags_Public file?)")
        cloud = doc.get("cloud", "")
        if not isinstance(cloud, str):
            raise fail("'cloud' must be a string")
        values = doc.get("values")
        if not isinstance(values, list):
            raise fail("'values' must be a list of service tags")
        if not values:
            raise fail("'values' is empty: the file lists no service tags")

        tags: list[tuple[str, str | None]] = []
        seen_names: set[str] = set()
        # prefix text -> indexes of the tags listing it; the same text recurs in
        # many tags (AzureCloud, its regional tag, the service's tags), so each
        # distinct text is parsed once, below.
        listed: dict[str, list[int]] = {}
        prefix_count = 0
        for i, value in enumerate(values):
            where = f"values[{i}]"
            if not isinstance(value, dict):
                raise fail(f"{where} must be an object")
            name = value.get("name")
            if not isinstance(name, str) or not name:
                raise fail(f"{where}: 'name' must be a non-empty string")
            where = f"{where} ({name})"
            if name in seen_names:
                raise fail(f"{where}: tag name listed twice")
            seen_names.add(name)
            props = value.get("properties")
            if not isinstance(props, dict):
                raise fail(f"{where}: 'properties' must be an object")
            region = props.get("region", "")
            if not isinstance(region, str):
                raise fail(f"{where}: 'properties.region' must be a string")
            prefixes = props.get("addressPrefixes")
            if not isinstance(prefixes, list):
                raise fail(f"{where}: 'properties.addressPrefixes' must be a list")
            tag_index = len(tags)
            tags.append((name, region or None))
            for j, text in enumerate(prefixes):
                if not isinstance(text, str):
                    raise fail(f"{where}: properties.addressPrefixes[{j}] must be a string")
                owners = listed.get(text)
                if owners is None:
                    listed[text] = [tag_index]
                elif owners[-1] != tag_index:  # a tag listing a prefix twice counts once
                    owners.append(tag_index)
            prefix_count += len(prefixes)

        # (family, length, network) -> (prefix text, tag indexes)
        index: dict[tuple[int, int, int], tuple[str, list[int]]] = {}
        for text, owners in listed.items():
            parsed = _parse_prefix(text)
            if parsed is None:
                raise fail(_bad_prefix(values, text))
            entry = index.get(parsed)
            if entry is None:
                index[parsed] = (text, owners)
            else:  # the same network spelt differently ("2603:1000::/40" vs "2603:1000:0::/40")
                entry[1].extend(t for t in owners if t not in entry[1])

        return cls(
            source=source,
            change_number=change,
            cloud=cloud,
            tag_count=len(tags),
            prefix_count=prefix_count,
            _families={family: _build_family(family, index, tags) for family in (4, 6)},
        )

    # ------------------------------------------------------------------ lookup

    def lookup(
        self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> tuple[TagMatch, ...]:
        """Every tag containing `address`, most specific prefix first; () if none or not an address."""
        parsed = _parse_address(address)
        if parsed is None:
            return ()
        family, value = parsed
        fam = self._families[family]
        bits = fam.bits
        found: dict[str, TagMatch] = {}
        for length, table in fam.blocks.get(value >> (bits - fam.block_length), ()):
            hit = table.get(value >> (bits - length))
            if hit is not None:
                for match in hit:
                    # setdefault: the longest prefix per tag wins, as lengths run longest first
                    found.setdefault(match.name, match)
        return tuple(found.values())

    def region_of(self, address: str) -> str | None:
        """The region of the most specific regional tag containing `address`, if any."""
        for match in self.lookup(address):
            if match.region:
                return match.region
        return None


def _bad_prefix(values: list[Any], text: str) -> str:
    """Name the first tag and position listing a malformed prefix (error path only)."""
    for i, value in enumerate(values):
        prefixes = value["properties"]["addressPrefixes"]
        if text in prefixes:
            return (
                f"values[{i}] ({value['name']}): properties.addressPrefixes"
                f"[{prefixes.index(text)}] {text[:64]!r} is not an IP prefix"
            )
    return f"{text[:64]!r} is not an IP prefix"  # unreachable: text came from values


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic GC while ~200,000 acyclic objects are built.

    Without it, generation-2 collections re-scan the growing heap and loading
    the real file takes 0.6-1.1 s instead of ~0.3 s.  Nothing built here has
    cycles, so nothing is left for the collector to find afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build_family(
    family: int,
    index: dict[tuple[int, int, int], tuple[str, list[int]]],
    tags: list[tuple[str, str | None]],
) -> _Family:
    bits = _BITS[family]
    tables: dict[int, _Table] = {}
    for (fam, length, network), (text, idx) in index.items():
        if fam == family:
            tables.setdefault(length, {})[network] = tuple(TagMatch(*tags[t], text) for t in idx)
    block_length = min(tables, default=0)
    lengths_in_block: dict[int, set[int]] = {}
    for length, table in tables.items():
        for network in table:
            lengths_in_block.setdefault(network >> (length - block_length), set()).add(length)
    blocks = {
        block: tuple((length, tables[length]) for length in sorted(lengths, reverse=True))
        for block, lengths in lengths_in_block.items()
    }
    return _Family(bits=bits, block_length=block_length, blocks=blocks)


def _parse_address(address: object) -> tuple[int, int] | None:
    """(IP version, address as int), or None; inet_pton is ~4x faster than ipaddress."""
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address.version, int(address)
    if not isinstance(address, str):
        return None
    family = 6 if ":" in address else 4
    try:
        packed = socket.inet_pton(_AF[family], address)
    except OSError:
        return None
    return family, int.from_bytes(packed, "big")


def _parse_prefix(text: str) -> tuple[int, int, int] | None:
    """'a.b.c.d/n' or 'x::/n' as (family, length, network int); None if malformed.

    Hand-rolled with inet_pton because ipaddress.ip_network costs several
    microseconds per prefix and the file has ~96,000 of them.  Host bits are
    dropped, as `ip_network(strict=False)` would.
    """
    address, sep, length_text = text.partition("/")
    if not sep or not length_text.isdigit() or len(length_text) > 3:
        return None
    family = 6 if ":" in address else 4
    try:
        packed = socket.inet_pton(_AF[family], address)
    except OSError:
        return None
    length = int(length_text)
    bits = _BITS[family]
    if length > bits:
        return None
    return family, length, int.from_bytes(packed, "big") >> (bits - length)
