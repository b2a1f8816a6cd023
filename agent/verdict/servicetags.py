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

The index is compact: per family, the ~54,000 distinct networks of the real
file sit in sorted integer arrays (`array`), one run per prefix length, with
their tags and prefix texts in flat arrays beside them -- about 2 MB, where a
Python object per prefix took ~45 MB.  A lookup bisects the runs of the
lengths that occur in the address's block (a first table, keyed by the
address's block at the family's shortest length, lists them): an address
outside Azure costs one bisection, one inside a handful.  Parsing the JSON
(~15 MB of objects for a moment) happens once per file version: the index is
cached beside the file (`<file>.erpath-index`, see `_cache`), keyed by the
file's size, mtime and changeNumber.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import json
import os
import re
import socket
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any

_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_BITS = {4: 32, 6: 128}
_WORD = 64  # bits per array item ('Q'); longer IPv6 keys are split in two
# Files smaller than this are indexed in milliseconds: no cache file for them.
CACHE_MIN_BYTES = 256 * 1024


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


@dataclass(frozen=True, slots=True, eq=False)
class _Family:
    """The networks of one IP version, as sorted arrays (no Python object per prefix).

    Entry i is one distinct network.  Entries run by prefix length (`runs`),
    and within a length by key (the network's leading `length` bits):
    `hi[i]` is the key's first 64 bits and `lo[i]` the rest (IPv6 longer
    than /64; else 0).  Its prefix text, as the file spells it, is
    `texts[text_at[i]:text_at[i+1]]`; the tags listing it (indexes into
    ServiceTags' tags, in file order) are `owners[owner_at[i]:owner_at[i+1]]`.
    """

    bits: int
    block_length: int  # the shortest prefix length of this family in the file
    # Sorted blocks (address >> (bits - block_length)) holding any network;
    # block_sets[j] picks, in length_sets, the lengths inside block j, longest first.
    block_keys: array
    block_sets: array
    length_sets: tuple[tuple[int, ...], ...]
    runs: dict[int, tuple[int, int]]  # length -> (first entry, end)
    hi: array
    lo: array
    text_at: array
    texts: bytes
    owner_at: array
    owners: array


@dataclass(frozen=True, slots=True, eq=False)
class ServiceTags:
    """A loaded service tags file; immutable, safe to share between threads."""

    source: str
    change_number: int
    cloud: str
    tag_count: int
    prefix_count: int  # prefix entries in the file, duplicates across tags included
    _tags: tuple[tuple[str, str | None], ...]  # (name, region) in file order
    _families: dict[int, _Family]  # keyed by IP version

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, cache: bool | None = None, helper: bool = True
    ) -> ServiceTags:
        """Read and index a ServiceTags_Public JSON file; raise ServiceTagsError if unusable.

        `cache`: use and keep the index beside the file (`<file>.erpath-index`);
        None does so for files of CACHE_MIN_BYTES or more.  The cache is only
        ever an optimisation: unreadable, stale or corrupt, it is rebuilt; a
        read-only directory just means building in memory each time.

        `helper`: a missing cache of a big file is built by a short-lived
        child process, so the agent itself never holds the parsed JSON (~37 MB
        for a moment, which its long-running peak RSS would keep forever);
        where the helper fails, the index is built here.
        """
        from agent.verdict import indexcache

        source = os.fspath(path)
        try:
            with open(source, "rb") as f:
                st = os.fstat(f.fileno())
                use_cache = cache if cache is not None else st.st_size >= CACHE_MIN_BYTES
                key = _cache_key(f, st) if use_cache else None
                if key is not None:
                    cache_path = indexcache.path_for(source)
                    hit = indexcache.read(cache_path, key)
                    if (
                        hit is None
                        and helper
                        and st.st_size >= CACHE_MIN_BYTES
                        and os.access(os.path.dirname(os.path.abspath(source)), os.W_OK)
                    ):
                        hit = indexcache.read(cache_path, key) if _build_in_helper(source) else None
                    cached = _from_cache(source, *hit) if hit else None
                    if cached is not None:
                        return cached
                f.seek(0)
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
        del raw
        tags = cls.from_document(doc, source=source)
        del doc
        if key is not None:
            indexcache.write(indexcache.path_for(source), key, *_to_cache(tags))
        return tags

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
            _tags=tuple(tags),
            _families={family: _build_family(family, index) for family in (4, 6)},
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
        block = value >> (bits - fam.block_length)
        j = bisect_left(fam.block_keys, block)
        if j == len(fam.block_keys) or fam.block_keys[j] != block:
            return ()
        hi, lo = fam.hi, fam.lo
        found: dict[str, TagMatch] = {}
        for length in fam.length_sets[fam.block_sets[j]]:  # longest first
            start, end = fam.runs[length]
            key = value >> (bits - length)
            if length <= _WORD:
                i = bisect_left(hi, key, start, end)
                if i == end or hi[i] != key:
                    continue
            else:
                rest = length - _WORD
                top, low = key >> rest, key & ((1 << rest) - 1)
                first = bisect_left(hi, top, start, end)
                if first == end or hi[first] != top:
                    continue
                last = bisect_right(hi, top, first, end)
                i = bisect_left(lo, low, first, last)
                if i == last or lo[i] != low:
                    continue
            text = None
            for t in fam.owners[fam.owner_at[i] : fam.owner_at[i + 1]]:
                name, region = self._tags[t]
                if name not in found:  # the longest prefix per tag wins: lengths run longest first
                    if text is None:
                        text = fam.texts[fam.text_at[i] : fam.text_at[i + 1]].decode()
                    found[name] = TagMatch(name, region, text)
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


def _build_family(family: int, index: dict[tuple[int, int, int], tuple[str, list[int]]]) -> _Family:
    bits = _BITS[family]
    entries = sorted(
        (length, network, text, owners)
        for (fam, length, network), (text, owners) in index.items()
        if fam == family
    )
    hi, lo = array("Q"), array("Q")
    text_at, owner_at, owners_flat = array("I", [0]), array("I", [0]), array("I")
    texts = bytearray()
    runs: dict[int, tuple[int, int]] = {}
    lengths_in_block: dict[int, set[int]] = {}
    # Capped at 64 bits so that blocks fit the array's items.
    block_length = min(entries[0][0], _WORD) if entries else 0
    for i, (length, network, text, owners) in enumerate(entries):
        start, _ = runs.get(length, (i, i))
        runs[length] = (start, i + 1)
        rest = max(length - _WORD, 0)
        hi.append(network >> rest)
        lo.append(network & ((1 << rest) - 1))
        texts += text.encode()
        text_at.append(len(texts))
        owners_flat.extend(owners)
        owner_at.append(len(owners_flat))
        lengths_in_block.setdefault(network >> (length - block_length), set()).add(length)
    length_sets: dict[tuple[int, ...], int] = {}
    block_keys, block_sets = array("Q"), array("I")
    for block in sorted(lengths_in_block):
        lengths = tuple(sorted(lengths_in_block[block], reverse=True))
        block_keys.append(block)
        block_sets.append(length_sets.setdefault(lengths, len(length_sets)))
    return _Family(
        bits=bits,
        block_length=block_length,
        block_keys=block_keys,
        block_sets=block_sets,
        length_sets=tuple(length_sets),
        runs=runs,
        hi=hi,
        lo=lo,
        text_at=text_at,
        texts=bytes(texts),
        owner_at=owner_at,
        owners=owners_flat,
    )


# --------------------------------------------------------------------------- the cache

_CACHE_FORMAT = 1
_ARRAYS = ("block_keys", "block_sets", "hi", "lo", "text_at", "owner_at", "owners")
_HEAD_BYTES = 4096


def _cache_key(f: Any, st: os.stat_result) -> dict[str, Any] | None:
    """Which version of the file an index belongs to: size, mtime and changeNumber.

    The changeNumber comes from the file's head (the published files start
    with it), so checking the cache never parses the JSON.  None: no cache.
    """
    match = re.search(rb'"changeNumber"\s*:\s*(\d+)', f.read(_HEAD_BYTES))
    if match is None:
        return None
    return {
        "format": _CACHE_FORMAT,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "change_number": int(match.group(1)),
    }


def _build_in_helper(source: str) -> bool:
    """Build and cache the index of `source` in a child process; True if it did."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "agent.verdict.servicetags", source],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _to_cache(tags: ServiceTags) -> tuple[dict[str, Any], dict[str, array | bytes]]:
    meta: dict[str, Any] = {
        "change_number": tags.change_number,
        "cloud": tags.cloud,
        "prefix_count": tags.prefix_count,
        "tags": tags._tags,
        "families": {},
    }
    sections: dict[str, array | bytes] = {}
    for version, fam in tags._families.items():
        meta["families"][str(version)] = {
            "block_length": fam.block_length,
            "length_sets": fam.length_sets,
            "runs": [[length, start, end] for length, (start, end) in fam.runs.items()],
        }
        for name in _ARRAYS:
            sections[f"{version}.{name}"] = getattr(fam, name)
        sections[f"{version}.texts"] = fam.texts
    return meta, sections


def _from_cache(
    source: str, meta: dict[str, Any], sections: dict[str, array | bytes]
) -> ServiceTags | None:
    """The index from an intact cache file; None if its contents do not fit together."""
    try:
        tags = tuple((str(name), str(region) if region else None) for name, region in meta["tags"])
        families = {}
        for version in (4, 6):
            m = meta["families"][str(version)]
            arrays = {name: sections[f"{version}.{name}"] for name in _ARRAYS}
            texts = sections[f"{version}.texts"]
            fam = _Family(
                bits=_BITS[version],
                block_length=int(m["block_length"]),
                length_sets=tuple(tuple(int(x) for x in s) for s in m["length_sets"]),
                runs={int(length): (int(a), int(b)) for length, a, b in m["runs"]},
                texts=texts,  # type: ignore[arg-type]
                **arrays,  # type: ignore[arg-type]
            )
            n = len(fam.hi)
            if not (
                isinstance(texts, bytes)
                and all(isinstance(a, array) for a in arrays.values())
                and len(fam.lo) == n
                and len(fam.text_at) == len(fam.owner_at) == n + 1
                and len(fam.block_keys) == len(fam.block_sets)
                and (not fam.text_at or fam.text_at[-1] == len(texts))
                and (not fam.owner_at or fam.owner_at[-1] == len(fam.owners))
                and all(0 <= a <= b <= n for a, b in fam.runs.values())
                and all(s < len(fam.length_sets) for s in fam.block_sets)
                and all(x in fam.runs for s in fam.length_sets for x in s)
                and (not fam.owners or max(fam.owners) < len(tags))
            ):
                return None
            families[version] = fam
        return ServiceTags(
            source=source,
            change_number=int(meta["change_number"]),
            cloud=str(meta["cloud"]),
            tag_count=len(tags),
            prefix_count=int(meta["prefix_count"]),
            _tags=tags,
            _families=families,
        )
    except (KeyError, TypeError, ValueError):
        return None


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


if __name__ == "__main__":
    # The helper of ServiceTags.load: build the index of one file into its cache.
    import sys
    import time

    from agent.verdict import indexcache

    started_ns = time.time_ns()
    try:
        ServiceTags.load(sys.argv[1], cache=True, helper=False)
    except ServiceTagsError as error:
        sys.exit(str(error))
    # Written now (file times run on the kernel's coarse clock: 50 ms of slack),
    # or the agent must build the index itself.
    cache_file = indexcache.path_for(sys.argv[1])
    written = (
        os.path.isfile(cache_file) and os.stat(cache_file).st_mtime_ns >= started_ns - 50_000_000
    )
    sys.exit(0 if written else "the index cache could not be written")
