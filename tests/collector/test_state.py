"""Pure path-state logic: hysteresis, flips, DNS-driven flips, ECMP churn, asymmetry pairing."""

from __future__ import annotations

from dataclasses import replace

from agent.report import report_from_dict
from collector import state
from collector.state import Observation, PathKey, SitePath

from .reports import SITE_FACTS, er, inet, report, result, simple

ER = PathKey("expressroute", "ams-1", "primary")
ER2 = PathKey("expressroute", "ams-1", "secondary")
NET = PathKey("internet", None, None, "ams-inet")


def obs(
    key: PathKey, address: str = "198.18.1.10", sig: str = "as:65001 12076 8075"
) -> Observation:
    return Observation("t", "api", key, address=address, addresses=(address,), signature=sig)


def run(keys, confirm=2, start=None):
    s, events, flips = start, [], []
    for i, k in enumerate(keys, start=1):
        o = k if isinstance(k, Observation) else obs(k)
        t = state.apply(s, o, seq=i, received_s=100.0 + i, confirm_reports=confirm)
        s = t.state
        events.extend(t.events)
        if t.flip:
            flips.append(t.flip)
    return s, events, flips


def test_one_odd_report_is_recorded_not_a_flip():
    s, events, flips = run([ER, ER, NET, ER])
    assert flips == [] and s.key == ER and s.flips_total == 0
    assert [e.kind for e in events] == ["path_deviation"]
    assert (
        events[0].before["path"] == "expressroute/ams-1/primary"
        and events[0].after["path"] == "internet"
    )


def test_two_in_a_row_confirm_the_flip_since_the_first():
    s, events, flips = run([ER, ER, NET, NET])
    assert len(flips) == 1 and s.key == NET and s.flips_total == 1
    assert s.since_s == 103.0  # the first report that saw the new path
    f = flips[0]
    assert f.kind == "route_flip" and f.driver == "routing" and f.severity == "critical"
    assert f.before["path"] == "expressroute/ams-1/primary" and f.after["path"] == "internet"


def test_confirm_count_is_configurable():
    _, _, flips = run([ER, NET, NET], confirm=3)
    assert flips == []
    _, _, flips = run([ER, NET, NET, NET], confirm=3)
    assert len(flips) == 1
    _, _, flips = run([ER, NET], confirm=1)
    assert len(flips) == 1


def test_link_change_is_a_flip():
    _, _, flips = run([ER, ER2, ER2])
    assert flips[0].before["link"] == "primary" and flips[0].after["link"] == "secondary"


def test_flip_with_a_new_address_is_dns_driven():
    _, _, flips = run([ER, obs(NET, address="198.18.9.9"), obs(NET, address="198.18.9.9")])
    assert flips[0].driver == "dns"


def test_hop_changes_on_the_same_path_are_a_low_severity_path_change():
    s, events, flips = run(
        [ER, obs(ER, sig="as:65001 12076 8075"), obs(ER, sig="as:65001 3356 8075")]
    )
    assert flips == [] and [e.kind for e in events] == ["path_change"]
    assert events[0].severity == "info" and s.signature == "as:65001 3356 8075"


def test_signature_ignores_ecmp_members_when_asns_are_known():
    a = report_from_dict(simple("a", 1, er(), asns=(65001, 12076, 8075)))
    doc = simple("a", 1, er(), asns=(65001, 12076, 8075))
    doc["results"][0]["trace"]["hops"][1]["replies"][0]["address"] = "10.9.9.9"  # other ECMP member
    b = report_from_dict(doc)
    assert state.signature(a.results[0]) == state.signature(b.results[0]) == "as:65001 12076 8075"


def test_observations_take_the_first_result_with_a_verdict_per_target():
    doc = report(
        "a",
        1,
        [
            result("t", er(), address="198.18.1.1"),
            result("t", inet(), address="198.18.1.2"),
            result("u", inet()),
        ],
    )
    obs_ = state.observations(report_from_dict(doc))
    assert [(o.target, o.key.path_class, o.addresses) for o in obs_] == [
        ("t", "expressroute", ("198.18.1.1", "198.18.1.2")),
        ("u", "internet", ("198.18.1.10",)),
    ]


def test_reported_asymmetry_findings_carry_site_and_circuit():
    finding = {
        "kind": "asymmetry.nat-advertised",
        "severity": "critical",
        "evidence": ["NAT 192.0.2.10 of ams-inet lies in 198.51.100.0/28 advertised over ams-1"],
        "fix": "stop advertising 192.0.2.10 over ams-1",
    }
    other = {"kind": "premium-needed", "severity": "warning"}
    r = report_from_dict(simple("a", 1, inet(), findings=[finding, other]))
    (a,) = state.reported_asymmetries(r)
    assert (a.site, a.circuit, a.kind, a.agent) == ("ams", "ams-1", "reported", "a")
    assert any("fix: stop advertising" in line for line in a.evidence)


def _facts():
    return {"ams": report_from_dict(simple("x", 1, er())).site}


def test_reverse_over_expressroute_against_forward_over_internet_is_asymmetric():
    fwd = SitePath("br-1", "ams", "api.powerapps.com", NET, "198.18.1.10", ("egress via ams-inet",))
    # The internet NAT address 192.0.2.10 is advertised over the circuit as well: reverse comes back over ER.
    site = _facts()["ams"]
    circuit = replace(site.circuits[0], advertised_prefixes=("198.51.100.0/28", "192.0.2.0/28"))
    facts = {"ams": replace(site, circuits=(circuit,))}
    rev = SitePath("az-1", "azure-weu", "192.0.2.10", ER, "192.0.2.10", ("hop 2 is MSEE of ams-1",))
    (a,) = state.measured_asymmetries(facts, [rev], {"ams": [fwd]})
    assert (a.site, a.circuit, a.kind, a.agent, a.target) == (
        "ams",
        "ams-1",
        "measured",
        "br-1",
        "api.powerapps.com",
    )
    assert a.evidence[0].startswith("forward br-1 -> api.powerapps.com: internet via ams-inet")
    assert a.evidence[1].startswith("reverse az-1 -> 192.0.2.10: expressroute/ams-1/primary")


def test_symmetric_and_unrelated_paths_are_not_asymmetric():
    facts = _facts()
    fwd_er = SitePath("br-1", "ams", "t", ER, None)
    rev_er = SitePath("az-1", "az", "198.51.100.5", ER, "198.51.100.5")
    assert state.measured_asymmetries(facts, [rev_er], {"ams": [fwd_er]}) == []
    fwd_net = SitePath("br-1", "ams", "t", NET, None)
    rev_net = SitePath("az-1", "az", "192.0.2.10", PathKey("internet"), "192.0.2.10")
    assert state.measured_asymmetries(facts, [rev_net], {"ams": [fwd_net]}) == []
    # A reverse trace to an address no site owns pairs with nothing.
    stranger = SitePath("az-1", "az", "198.18.200.1", ER, "198.18.200.1")
    assert state.measured_asymmetries(facts, [stranger], {"ams": [fwd_net]}) == []


def test_forward_over_circuit_a_reverse_over_circuit_b():
    facts = _facts()
    fwd = SitePath("br-1", "ams", "t", ER, None)
    rev = SitePath(
        "az-1", "az", "198.51.100.5", PathKey("expressroute", "fra-1", "primary"), "198.51.100.5"
    )
    (a,) = state.measured_asymmetries(facts, [rev], {"ams": [fwd]})
    assert a.circuit == "fra-1"


def test_owner_of_uses_nat_addresses_and_advertised_prefixes():
    facts = {"ams": report_from_dict(report("x", 1, [], facts=SITE_FACTS)).site}
    assert state.owner_of("192.0.2.10", facts) == [("ams", {"ams-inet"}, set())]
    assert state.owner_of("198.51.100.3", facts) == [("ams", set(), {"ams-1"})]
    assert state.owner_of("8.8.8.8", facts) == []


def test_leaked_internet_nat_prefix_pairs_only_with_internet_paths():
    """asymmetric-nat: a circuit also advertises the internet NAT prefix.  Forward paths
    over that circuit use the ER NAT pool, so only the internet-bound ones pair."""
    doc = report("x", 1, [], facts=SITE_FACTS)
    doc["site"]["circuits"][0]["advertised_prefixes"].append("192.0.2.0/24")
    facts = {"ams": report_from_dict(doc).site}
    assert state.owner_of("192.0.2.10", facts) == [("ams", {"ams-inet"}, set())]
    fwd_er = SitePath("br-1", "ams", "svc", ER, None)
    fwd_net = SitePath("br-1", "ams", "cdn", PathKey("internet", egress="ams-inet"), None)
    rev_er = SitePath("az-1", "az", "192.0.2.10", ER, "192.0.2.10")
    (a,) = state.measured_asymmetries(facts, [rev_er], {"ams": [fwd_er, fwd_net]})
    assert (a.target, a.circuit) == ("cdn", "ams-1")
