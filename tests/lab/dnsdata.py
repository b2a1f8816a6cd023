"""What the lab's DNS servers answer: the catalog names, CNAME chains, PTR names,
the Team-Cymru-style ASN zone, the split-horizon overrides and the
misbehaviour triggers.  Pure data; dnsserver.py does the I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from . import plan

BAD_ZONE = "bad.test"
CHAIN_LENGTH = 100
BIG_RECORDS = 150  # ~2.4 KB of A records: more than any UDP payload a client offers by default

# Query names that make the misbehaving resolver misbehave (always active on it).
TRIGGERS: dict[str, str] = {
    f"servfail.{BAD_ZONE}": "answers SERVFAIL",
    f"refused.{BAD_ZONE}": "answers REFUSED",
    f"silent.{BAD_ZONE}": "never answers (UDP and TCP)",
    f"loop.{BAD_ZONE}": "CNAME loop: loop -> loop-b -> loop",
    f"chain.{BAD_ZONE}": f"{CHAIN_LENGTH}-long CNAME chain, then an A record "
    "(TC over UDP when it does not fit, full answer over TCP)",
    f"big.{BAD_ZONE}": f"{BIG_RECORDS} A records sent over UDP regardless of the "
    "client's payload size (oversized response)",
    f"tc.{BAD_ZONE}": "TC=1 with an empty answer over UDP; the real answer over TCP",
}
# Whole-server modes for the misbehaving resolver (written to its mode file).
MODES: dict[str, str] = {
    "normal": "answer like the public resolver (triggers still apply)",
    "servfail": "SERVFAIL for every query",
    "silent": "never answer",
    "tc": "TC=1 over UDP for every query",
}
# Names the split-horizon resolver answers differently from the public one.
SPLIT_OVERRIDES: dict[str, str] = {
    "contoso.crm4.dynamics.com": plan.SPLIT_PRIVATE_DATAVERSE,  # private endpoint
    "make.powerapps.com": "198.19.17.10",  # another region's front end
}
TTL = 300


@dataclass(frozen=True, slots=True)
class Zone:
    """Flat records: lower-case absolute-less names -> type -> values."""

    records: dict[str, dict[str, tuple[str, ...]]]


def _reverse_name(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer


def cymru_txt(address: str) -> str | None:
    """'ASN | prefix | CC | registry | date' for an address, longest prefix wins."""
    a = ipaddress.ip_address(address)
    best = None
    for prefix, asn, cc, reg, date in plan.ASN_TABLE:
        net = ipaddress.ip_network(prefix)
        if a in net and (best is None or net.prefixlen > best[0].prefixlen):
            best = (net, asn, cc, reg, date)
    if best is None:
        return None
    net, asn, cc, reg, date = best
    return f"{asn} | {net} | {cc} | {reg} | {date}"


def build(view: str = "public") -> Zone:
    """view: public | split | bad (bad = public data; behaviour is in the server)."""
    rec: dict[str, dict[str, tuple[str, ...]]] = {}

    def add(name: str, rtype: str, *values: str) -> None:
        rec.setdefault(name.lower().rstrip("."), {})[rtype] = tuple(values)

    for t in plan.targets():
        address = t.address
        if view == "split" and t.name in SPLIT_OVERRIDES:
            add(t.name, "A", SPLIT_OVERRIDES[t.name])
            continue
        names = (t.name, *t.cname_chain)
        for here, there in zip(names, names[1:], strict=False):
            add(here, "CNAME", there + ".")
        add(names[-1], "A", address)
        if t.address6:
            add(names[-1], "AAAA", t.address6)
    for address, name in plan.PTR_NAMES.items():
        add(_reverse_name(address), "PTR", name + ".")
    for prefix, asn, cc, reg, date in plan.ASN_TABLE:
        del prefix, cc, reg, date
        add(
            f"as{asn}.asn.cymru.com",
            "TXT",
            f"{asn} | US | arin | 1997-03-27 | {plan.ASN_NAMES.get(asn, 'UNKNOWN')}",
        )
    if view == "bad":
        add(f"loop.{BAD_ZONE}", "CNAME", f"loop-b.{BAD_ZONE}.")
        add(f"loop-b.{BAD_ZONE}", "CNAME", f"loop.{BAD_ZONE}.")
        chain = [f"chain.{BAD_ZONE}"] + [
            f"c{i}.chain.{BAD_ZONE}" for i in range(1, CHAIN_LENGTH + 1)
        ]
        for here, there in zip(chain, chain[1:], strict=False):
            add(here, "CNAME", there + ".")
        add(chain[-1], "A", "198.19.16.10")
        add(
            f"big.{BAD_ZONE}",
            "A",
            *(
                f"198.19.16.{10 + i % 30}" if i < 30 else f"198.18.{200 + i // 250}.{i % 250}"
                for i in range(BIG_RECORDS)
            ),
        )
        add(f"tc.{BAD_ZONE}", "A", "198.19.16.10")
    return Zone(rec)


def lookup_txt_origin(qname: str) -> str | None:
    """TXT for <reversed-ip>.origin.asn.cymru.com (IPv4) or <reversed nibbles>
    .origin6.asn.cymru.com (IPv6), computed for any address."""
    name = qname.lower().rstrip(".")
    for suffix, count in ((".origin.asn.cymru.com", 4), (".origin6.asn.cymru.com", 32)):
        if not name.endswith(suffix):
            continue
        labels = name[: -len(suffix)].split(".")
        if len(labels) != count:
            return None
        try:
            if count == 4:
                address = str(ipaddress.IPv4Address(".".join(reversed(labels))))
            else:
                nibbles = "".join(reversed(labels))
                address = str(ipaddress.IPv6Address(int(nibbles, 16)))
        except ValueError:
            return None
        return cymru_txt(address)
    return None
