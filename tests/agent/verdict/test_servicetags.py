"""Service tags: the real published file, lookups checked against brute force, and bad files.

The real file lives next to the repo (<repo>/../shared/data), never in it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
from pathlib import Path

import pytest

from agent.verdict import indexcache, servicetags
from agent.verdict.servicetags import CACHE_MIN_BYTES, ServiceTags, ServiceTagsError, TagMatch
from tests.agent.servicetags_doc import tag_entry, tags_document

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
REAL = DATA / "ServiceTags_Public.json"

needs_real_file = pytest.mark.skipif(
    not REAL.is_file(),
    reason=f"the real ServiceTags_Public.json is not at {REAL} (shared test data absent)",
)


@pytest.fixture(scope="module")
def real() -> ServiceTags:
    return ServiceTags.load(REAL, cache=False)  # no index file beside the shared data


@pytest.fixture(scope="module")
def real_doc() -> dict:
    return json.loads(REAL.read_text())


def _prefixes(doc: dict, name: str) -> list[str]:
    (tag,) = [v for v in doc["values"] if v["name"] == name]
    return tag["properties"]["addressPrefixes"]


# --------------------------------------------------------------------------- the real file


@needs_real_file
def test_real_file_loads_whole(real):
    assert (real.tag_count, real.prefix_count) == (3041, 95823)
    assert real.change_number == 376
    assert real.cloud == "Public"
    assert real.source == str(REAL)


@needs_real_file
def test_power_platform_address_has_global_and_regional_tags(real, real_doc):
    prefix = _prefixes(real_doc, "PowerPlatformInfra.WestEurope")[0]
    address = str(ipaddress.ip_network(prefix)[1])
    matches = real.lookup(address)
    by_name = {m.name: m for m in matches}
    assert by_name["PowerPlatformInfra.WestEurope"] == TagMatch(
        "PowerPlatformInfra.WestEurope", "westeurope", prefix
    )
    assert by_name["PowerPlatformInfra"].region is None
    assert "AzureCloud" in by_name and by_name["AzureCloud.westeurope"].region == "westeurope"
    # most specific prefix first
    lengths = [ipaddress.ip_network(m.prefix).prefixlen for m in matches]
    assert lengths == sorted(lengths, reverse=True)
    assert real.region_of(address) == "westeurope"


@needs_real_file
def test_front_door_frontend(real, real_doc):
    prefix = _prefixes(real_doc, "AzureFrontDoor.Frontend")[0]
    address = str(ipaddress.ip_network(prefix).network_address)
    assert "AzureFrontDoor.Frontend" in {m.name for m in real.lookup(address)}


@needs_real_file
def test_ipv6_lookup(real, real_doc):
    prefix = next(p for p in _prefixes(real_doc, "PowerPlatformInfra") if ":" in p)
    address = ipaddress.ip_network(prefix)[5]
    assert "PowerPlatformInfra" in {m.name for m in real.lookup(address)}
    assert "PowerPlatformInfra" in {m.name for m in real.lookup(str(address))}


@needs_real_file
@pytest.mark.parametrize("address", ["10.1.2.3", "192.0.2.1", "2001:db8::1", "not-an-ip", ""])
def test_outside_azure_or_not_an_address(real, address):
    assert real.lookup(address) == ()
    assert real.region_of(address) is None


@needs_real_file
def test_lookup_agrees_with_brute_force(real, real_doc):
    """Sampled addresses inside, at the edges of and outside prefixes vs a naive scan."""
    networks = [
        (v["name"], ipaddress.ip_network(p))
        for v in real_doc["values"]
        for p in v["properties"]["addressPrefixes"]
    ]
    rng = random.Random(376)
    picks = [net for _, net in rng.sample(networks, 40)]
    addresses = [net.network_address for net in picks]
    addresses += [net.broadcast_address for net in picks[:10]]
    addresses += [net.broadcast_address + 1 for net in picks[:10] if net.version == 4]
    addresses += [ipaddress.ip_address(rng.getrandbits(32)) for _ in range(10)]
    by_int = [
        (name, net.version, int(net.network_address), net.num_addresses) for name, net in networks
    ]
    for address in addresses:
        value, version = int(address), address.version
        want = {
            name
            for name, v, start, size in by_int
            if v == version and start <= value < start + size
        }
        assert {m.name for m in real.lookup(address)} == want, address


@needs_real_file
def test_real_file_index_cached_beside_a_copy_answers_the_same(tmp_path, real, real_doc):
    copy = tmp_path / "ServiceTags_Public.json"
    shutil.copyfile(REAL, copy)
    built = ServiceTags.load(copy)  # big file: cached by default
    cache = tmp_path / ("ServiceTags_Public.json" + indexcache.SUFFIX)
    assert cache.is_file() and cache.stat().st_size < copy.stat().st_size
    cached = ServiceTags.load(copy)
    assert cached is not built
    rng = random.Random(7)
    prefixes = [p for v in real_doc["values"] for p in v["properties"]["addressPrefixes"]]
    addresses = [str(ipaddress.ip_network(p, strict=False)[-1]) for p in rng.sample(prefixes, 300)]
    addresses += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(100)]
    addresses += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(20)]
    for address in addresses:
        assert cached.lookup(address) == built.lookup(address) == real.lookup(address), address
    for attr in ("change_number", "cloud", "tag_count", "prefix_count"):
        assert getattr(cached, attr) == getattr(real, attr)
    assert cached.source == str(copy)


# --------------------------------------------------------------------------- synthetic files


def _doc(values=None, **top) -> dict:
    """A document of changeNumber 7 (one empty tag unless `values`), `top` keys replaced."""
    entries = values if values is not None else [tag_entry("Tag", [])]
    return tags_document(*entries, change=7) | top


def test_synthetic_nested_prefixes_and_duplicates(tmp_path):
    f = tmp_path / "tags.json"
    f.write_text(
        json.dumps(
            _doc(
                [
                    tag_entry("Wide", ["10.0.0.0/8"]),
                    tag_entry("Narrow", ["10.1.0.0/16", "10.1.2.0/24", "10.1.2.0/24"]),
                    tag_entry("Narrow.Region", ["10.1.2.0/24"], region="westeurope"),
                    tag_entry("Six", ["2001:db8::/32", "2001:db8:0:0::/48"]),
                ]
            )
        )
    )
    tags = ServiceTags.load(f)
    assert tags.prefix_count == 7
    assert tags.lookup("10.1.2.3") == (
        TagMatch("Narrow", None, "10.1.2.0/24"),
        TagMatch("Narrow.Region", "westeurope", "10.1.2.0/24"),
        TagMatch("Wide", None, "10.0.0.0/8"),
    )
    assert tags.lookup("10.1.3.1") == (
        TagMatch("Narrow", None, "10.1.0.0/16"),
        TagMatch("Wide", None, "10.0.0.0/8"),
    )
    assert tags.lookup("11.0.0.1") == ()
    assert tags.lookup("2001:db8::5") == (TagMatch("Six", None, "2001:db8:0:0::/48"),)
    assert tags.region_of("10.1.2.3") == "westeurope"


def test_host_bits_are_dropped_like_strict_false(tmp_path):
    tags = ServiceTags.from_document(_doc([tag_entry("Loose", ["10.1.2.3/24"])]))
    assert tags.lookup("10.1.2.200") == (TagMatch("Loose", None, "10.1.2.3/24"),)


# Each bad file with the exact message it must give: the file is named first,
# then the problem, in words a user can act on.
BAD_DOCUMENTS = [
    ("top-level-list", [], "the top level must be an object with changeNumber, cloud and values"),
    (
        "no-change-number",
        {"cloud": "Public", "values": []},
        "'changeNumber' must be an integer (is this a ServiceTags_Public file?)",
    ),
    (
        "change-number-text",
        _doc(changeNumber="376"),
        "'changeNumber' must be an integer (is this a ServiceTags_Public file?)",
    ),
    ("cloud-not-text", _doc(cloud=1), "'cloud' must be a string"),
    (
        "no-values",
        {"changeNumber": 1, "cloud": "Public"},
        "'values' must be a list of service tags",
    ),
    ("empty-values", _doc([]), "'values' is empty: the file lists no service tags"),
    ("value-not-object", _doc(["Tag"]), "values[0] must be an object"),
    ("no-name", _doc([{"properties": {}}]), "values[0]: 'name' must be a non-empty string"),
    (
        "duplicate-name",
        _doc([tag_entry("A", []), tag_entry("A", [])]),
        "values[1] (A): tag name listed twice",
    ),
    ("no-properties", _doc([{"name": "A"}]), "values[0] (A): 'properties' must be an object"),
    (
        "region-not-text",
        _doc([{"name": "A", "properties": {"region": None, "addressPrefixes": []}}]),
        "values[0] (A): 'properties.region' must be a string",
    ),
    (
        "prefixes-not-list",
        _doc([{"name": "A", "properties": {"region": "", "addressPrefixes": "10.0.0.0/8"}}]),
        "values[0] (A): 'properties.addressPrefixes' must be a list",
    ),
    (
        "prefix-not-text",
        _doc([tag_entry("A", ["10.0.0.0/8", 10])]),
        "values[0] (A): properties.addressPrefixes[1] must be a string",
    ),
    (
        "prefix-too-long",
        _doc([tag_entry("A", []), tag_entry("B", ["10.0.0.0/8", "10.0.0.0/33"])]),
        "values[1] (B): properties.addressPrefixes[1] '10.0.0.0/33' is not an IP prefix",
    ),
    (
        "prefix-no-length",
        _doc([tag_entry("A", ["10.0.0.0"])]),
        "values[0] (A): properties.addressPrefixes[0] '10.0.0.0' is not an IP prefix",
    ),
    (
        "prefix-short-address",
        _doc([tag_entry("A", ["10.0/8"])]),
        "values[0] (A): properties.addressPrefixes[0] '10.0/8' is not an IP prefix",
    ),
    (
        "prefix-bad-ipv6",
        _doc([tag_entry("A", ["2001:db8::g/32"])]),
        "values[0] (A): properties.addressPrefixes[0] '2001:db8::g/32' is not an IP prefix",
    ),
    (
        "prefix-negative-length",
        _doc([tag_entry("A", ["10.0.0.0/-1"])]),
        "values[0] (A): properties.addressPrefixes[0] '10.0.0.0/-1' is not an IP prefix",
    ),
]


@pytest.mark.parametrize(
    "doc, problem", [c[1:] for c in BAD_DOCUMENTS], ids=[c[0] for c in BAD_DOCUMENTS]
)
def test_malformed_document_names_file_and_problem(tmp_path, doc, problem):
    f = tmp_path / "ServiceTags_Public_20251109.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(ServiceTagsError) as e:
        ServiceTags.load(f)
    assert e.value.source == str(f)
    assert e.value.problem == problem
    assert str(e.value) == f"service tags file {f}: {problem}"


def test_not_json(tmp_path):
    f = tmp_path / "tags.json"
    f.write_text('{"changeNumber": 1,\n  "values": [}')
    with pytest.raises(ServiceTagsError) as e:
        ServiceTags.load(f)
    assert e.value.problem == "is not valid JSON: Expecting value (line 2, column 14)"


def test_truncated_download(tmp_path):
    f = tmp_path / "tags.json"
    f.write_text(json.dumps(_doc([tag_entry("A", ["10.0.0.0/8"])]))[:-20])
    with pytest.raises(ServiceTagsError, match=r"is not valid JSON: .* \(line 1, column \d+\)"):
        ServiceTags.load(f)


def test_not_text(tmp_path):
    f = tmp_path / "tags.json"
    f.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(ServiceTagsError) as e:
        ServiceTags.load(f)
    assert e.value.problem.startswith("is not ")


def test_missing_file(tmp_path):
    f = tmp_path / "nowhere.json"
    with pytest.raises(ServiceTagsError) as e:
        ServiceTags.load(f)
    assert e.value.problem == "cannot read it: No such file or directory"
    assert str(f) in str(e.value)


def test_error_is_a_value_error():
    """Config loading catches ValueError-family errors for bad files."""
    assert issubclass(ServiceTagsError, ValueError)


# --------------------------------------------------------------------------- the index cache

NESTED = [
    tag_entry("Wide", ["10.0.0.0/8", "2001:db8::/32"]),
    tag_entry("Narrow", ["10.1.2.0/24", "2001:db8:0:1::/120", "2001:db8:0:1::80/128"]),
    tag_entry("Narrow.Region", ["10.1.2.0/24", "2001:db8:0:1::/120"], region="westeurope"),
    tag_entry("Host", ["2001:db8:0:1::80/128", "10.1.2.3/32"]),
]
NESTED_ANSWERS = {
    "10.1.2.3": ("Host", "Narrow", "Narrow.Region", "Wide"),
    "10.1.2.4": ("Narrow", "Narrow.Region", "Wide"),
    "10.9.0.1": ("Wide",),
    "2001:db8:0:1::80": ("Narrow", "Host", "Narrow.Region", "Wide"),
    "2001:db8:0:1::81": ("Narrow", "Narrow.Region", "Wide"),
    "2001:db8:0:1::1:0": ("Wide",),
    "2001:db9::": (),
    "11.0.0.0": (),
}


def _write(path, values, change=7) -> None:
    path.write_text(json.dumps(_doc(values, changeNumber=change)))


def _names(tags: ServiceTags, address: str) -> tuple[str, ...]:
    return tuple(m.name for m in tags.lookup(address))


@pytest.mark.parametrize("cache", [False, True])
def test_long_ipv6_prefixes_built_and_cached(tmp_path, cache):
    f = tmp_path / "tags.json"
    _write(f, NESTED)
    ServiceTags.load(f, cache=cache)
    tags = ServiceTags.load(f, cache=cache)  # the second load reads the index file, if cached
    assert (tmp_path / ("tags.json" + indexcache.SUFFIX)).exists() == cache
    for address, names in NESTED_ANSWERS.items():
        assert _names(tags, address) == names, address
    assert tags.lookup("2001:db8:0:1::80")[0] == TagMatch("Narrow", None, "2001:db8:0:1::80/128")
    assert tags.region_of("2001:db8:0:1::5") == "westeurope"


def test_small_files_get_no_index_file_by_default(tmp_path):
    f = tmp_path / "tags.json"
    _write(f, NESTED)
    assert f.stat().st_size < CACHE_MIN_BYTES
    ServiceTags.load(f)
    assert os.listdir(tmp_path) == ["tags.json"]


def test_cache_is_reused_without_reading_the_json(tmp_path):
    """Same size, mtime and changeNumber: the index file answers, the JSON is not parsed."""
    f = tmp_path / "tags.json"
    _write(f, [tag_entry("Alpha", ["10.0.0.0/8"])])
    ServiceTags.load(f, cache=True)
    st = f.stat()
    _write(f, [tag_entry("Bravo", ["10.0.0.0/8"])])  # same length, same changeNumber
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _names(ServiceTags.load(f, cache=True), "10.1.1.1") == ("Alpha",)
    assert _names(ServiceTags.load(f, cache=False), "10.1.1.1") == ("Bravo",)


@pytest.mark.parametrize("change", ["mtime", "size", "change_number"])
def test_cache_is_rebuilt_when_the_file_changes(tmp_path, change):
    f = tmp_path / "tags.json"
    _write(f, [tag_entry("Alpha", ["10.0.0.0/8"])], change=7)
    assert _names(ServiceTags.load(f, cache=True), "10.1.1.1") == ("Alpha",)
    st = f.stat()
    if change == "mtime":
        _write(f, [tag_entry("Bravo", ["10.0.0.0/8"])], change=7)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    elif change == "size":
        _write(f, [tag_entry("Bravo2", ["10.0.0.0/8"])], change=7)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        _write(f, [tag_entry("Bravo", ["10.0.0.0/8"])], change=8)  # same length: 7 -> 8
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert f.stat().st_size == st.st_size
    tags = ServiceTags.load(f, cache=True)
    assert _names(tags, "10.1.1.1") != ("Alpha",)
    # ... and the new index replaced the old one
    assert ServiceTags.load(f, cache=True).lookup("10.1.1.1") == tags.lookup("10.1.1.1")
    assert sorted(os.listdir(tmp_path)) == ["tags.json", "tags.json" + indexcache.SUFFIX]


def _flip_last_byte(p):
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:-7]), id="truncated"),
        pytest.param(_flip_last_byte, id="flipped-byte"),
        pytest.param(lambda p: p.write_bytes(b"erpath-index 1\n{not json\n"), id="bad-header"),
        pytest.param(lambda p: p.write_bytes(os.urandom(4096)), id="random"),
    ],
)
def test_corrupt_cache_is_ignored_and_replaced(tmp_path, damage):
    f = tmp_path / "tags.json"
    _write(f, NESTED)
    ServiceTags.load(f, cache=True)
    cache = tmp_path / ("tags.json" + indexcache.SUFFIX)
    damage(cache)
    tags = ServiceTags.load(f, cache=True)
    for address, names in NESTED_ANSWERS.items():
        assert _names(tags, address) == names, address
    assert indexcache.read(str(cache), {"nothing": 0}) is None  # another key: not trusted
    assert ServiceTags.load(f, cache=True).lookup("10.1.2.3") == tags.lookup("10.1.2.3")


def test_cache_that_cannot_be_written_leaves_the_index_in_memory(tmp_path):
    """Where the index file cannot be replaced (a read-only directory, here a directory
    in its place, since root writes anywhere), loading still works and leaves no debris."""
    f = tmp_path / "tags.json"
    _write(f, NESTED)
    blocker = tmp_path / ("tags.json" + indexcache.SUFFIX)
    (blocker / "occupied").mkdir(parents=True)
    for _ in range(2):
        tags = ServiceTags.load(f, cache=True)
        assert _names(tags, "10.1.2.3") == NESTED_ANSWERS["10.1.2.3"]
    assert sorted(os.listdir(tmp_path)) == ["tags.json", "tags.json" + indexcache.SUFFIX]


def test_bad_file_writes_no_cache(tmp_path):
    f = tmp_path / "tags.json"
    f.write_text('{"changeNumber": 1, "values": [}')
    with pytest.raises(ServiceTagsError):
        ServiceTags.load(f, cache=True)
    assert os.listdir(tmp_path) == ["tags.json"]


def _big_values(bad_prefix: str | None = None) -> list[dict]:
    """Tags enough for a file past CACHE_MIN_BYTES (where the helper process builds)."""
    values = [
        tag_entry(f"Tag{i}", [f"10.{i // 256}.{i % 256}.0/24", f"2001:db8:{i:x}::/48"])
        for i in range(4000)
    ]
    if bad_prefix is not None:
        values[-1]["properties"]["addressPrefixes"].append(bad_prefix)
    return values


def test_helper_process_builds_the_cache_of_a_big_file(tmp_path):
    f = tmp_path / "ServiceTags_Public.json"
    _write(f, _big_values())
    assert f.stat().st_size >= CACHE_MIN_BYTES
    cache = tmp_path / (f.name + indexcache.SUFFIX)
    assert servicetags._build_in_helper(str(f))  # a child process wrote it
    assert cache.is_file()
    mtime = cache.stat().st_mtime_ns
    tags = ServiceTags.load(f)  # read from the helper's cache, not rebuilt
    assert cache.stat().st_mtime_ns == mtime
    assert _names(tags, "10.3.7.9") == ("Tag775",)
    assert tags.lookup("2001:db8:2a::1") == (TagMatch("Tag42", None, "2001:db8:2a::/48"),)


def test_big_bad_file_gets_the_same_error_after_the_helper_fails(tmp_path):
    f = tmp_path / "ServiceTags_Public.json"
    _write(f, _big_values(bad_prefix="10.0.0.0/33"))
    assert not servicetags._build_in_helper(str(f))
    with pytest.raises(ServiceTagsError) as e:
        ServiceTags.load(f)
    assert e.value.problem == (
        "values[3999] (Tag3999): properties.addressPrefixes[2] '10.0.0.0/33' is not an IP prefix"
    )
    assert os.listdir(tmp_path) == [f.name]


def test_helper_that_cannot_write_the_cache_says_so(tmp_path):
    f = tmp_path / "ServiceTags_Public.json"
    _write(f, _big_values())
    (tmp_path / (f.name + indexcache.SUFFIX) / "occupied").mkdir(parents=True)
    assert not servicetags._build_in_helper(str(f))  # the agent then builds in process
    assert _names(ServiceTags.load(f), "10.3.7.9") == ("Tag775",)
