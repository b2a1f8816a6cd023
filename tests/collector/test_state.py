"""Pure path-state logic: hysteresis, flips, unknown fields, DNS-driven flips, ECMP churn,
asymmetry findings and pairing."""

from __future__ import annotations

from dataclasses import replace

from agent.report import Evidence, Finding, report_from_dict
from collector import state
from collector.state import Observation, PathKey, SitePath

from .reports import SITE_FACTS, er, finding, inet, report, result, simple

ER = PathKey("expressroute", "ams-1")
DUB = PathKey("expressroute", "dub-2")
ER_UNKNOWN = PathKey("expressroute", None)  # the circuit could not be named this time
NET = PathKey("internet", None, "ams-inet")
UNKNOWN = PathKey("unknown")


def obs(
    key: PathKey,
    address: str = "198.18.1.10",
    sig: str = "as:65001 12076 8075",
    link: str | None = "primary",
) -> Observation:
    if key.path_class != "expressroute":
        link = None
    return Observation(
        "t", "api", key, link=link, address=address, addresses=(address,), signature=sig
    )


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
        events[0].before["path"] == "expressroute/ams-1"
        and events[0].after["path"] == "internet/ams-inet"
    )


def test_two_in_a_row_confirm_the_flip_since_the_first():
    s, events, flips = run([ER, ER, NET, NET])
    assert len(flips) == 1 and s.key == NET and s.flips_total == 1
    assert s.since_s == 103.0  # the first report that saw the new path
    f = flips[0]
    assert f.kind == "route_flip" and f.driver == "routing" and f.severity == "critical"
    assert f.before["path"] == "expressroute/ams-1" and f.after["path"] == "internet/ams-inet"
    assert f.before["link"] == "primary" and f.after["link"] is None


def test_confirm_count_is_configurable():
    _, _, flips = run([ER, NET, NET], confirm=3)
    assert flips == []
    _, _, flips = run([ER, NET, NET, NET], confirm=3)
    assert len(flips) == 1
    _, _, flips = run([ER, NET], confirm=1)
    assert len(flips) == 1


def test_a_change_of_link_alone_is_never_a_flip():
    """Active-active: one flow's hash names the primary in one run, the secondary in the next."""
    links = ["primary", "secondary", "secondary", "secondary", "primary", "secondary"]
    s, events, flips = run([obs(ER, link=link) for link in links])
    assert flips == [] and events == [] and s.candidate is None
    assert s.key == ER and s.link == "secondary"  # the last link seen, kept as state


def test_an_unknown_circuit_never_starts_or_confirms_a_flip():
    """A silent MSEE leaves the circuit unknown: not a change against the known circuit."""
    s, events, flips = run([ER, obs(ER_UNKNOWN, link=None), obs(ER_UNKNOWN, link=None), ER])
    assert flips == [] and events == [] and s.key == ER
    assert s.link == "primary"  # an unknown link does not erase the known one


def test_an_unknown_report_neither_confirms_nor_cancels_a_pending_flip():
    s, _, flips = run([ER, NET, UNKNOWN])
    assert flips == [] and s.candidate is not None and s.candidate.count == 1
    s, _, flips = run([NET], start=s)
    assert len(flips) == 1 and s.key == NET
    # Nor does a report that knows less than the path: ER with no circuit against ER/ams-1.
    s, _, flips = run([ER, DUB, obs(ER_UNKNOWN, link=None), DUB])
    assert len(flips) == 1 and flips[0].after["circuit"] == "dub-2"


def test_a_report_back_on_the_path_cancels_a_pending_flip():
    s, events, flips = run([ER, NET, ER, NET])
    assert flips == [] and s.candidate.count == 1
    assert [e.kind for e in events] == ["path_deviation", "path_deviation"]


def test_a_path_first_seen_unknown_learns_its_fields_without_a_flip():
    s, events, flips = run([UNKNOWN, obs(ER_UNKNOWN, link=None), ER])
    assert flips == [] and events == [] and s.key == ER


def test_circuit_failover_is_a_flip_and_the_chain_keeps_its_origin():
    s, _, flips = run([ER, DUB, DUB, NET, NET])
    assert [f.origin for f in flips] == [ER, ER]
    assert s.flip_origin == ER
    # Back on the origin: the chain ends.
    s, _, flips = run([ER, ER], start=s)
    assert flips[0].origin == ER and s.flip_origin is None


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


def test_reported_asymmetry_findings_carry_site_circuit_and_severity():
    other = {"kind": "premium-required", "severity": "warning"}
    r = report_from_dict(simple("a", 1, inet(), findings=[finding(), other]))
    (a,) = state.reported_asymmetries(r)
    assert (a.site, a.circuit, a.kind, a.agent, a.severity) == (
        "ams",
        "ams-1",
        "reported",
        "a",
        "critical",
    )
    assert a.evidence[0] == "a -> api.powerapps.com: asymmetric-nat (critical)"
    assert "advertised over ams-1" in a.evidence[1]
    assert a.evidence[-1] == "fix: stop advertising 192.0.2.0/28 over ams-1"


def test_a_may_finding_is_a_warning_and_so_is_a_predicted_only_one():
    may = finding(severity="warning")
    predicted = finding("asymmetric-circuit", predicted_only=True)
    r = report_from_dict(simple("a", 1, inet(), findings=[may, predicted]))
    a, b = state.reported_asymmetries(r)
    assert (a.severity, b.severity) == ("warning", "warning")
    assert b.evidence[0].endswith("(critical) (predicted from site facts, not observed)")


def test_the_circuit_of_a_finding_comes_from_its_fields_never_its_sentences():
    facts = {
        **SITE_FACTS,
        "circuits": [SITE_FACTS["circuits"][0], {**SITE_FACTS["circuits"][0], "name": "dub-2"}],
    }
    # The finding's own field.
    r = report_from_dict(simple("a", 1, inet(), findings=[finding(circuit="dub-2")], facts=facts))
    assert state.reported_asymmetries(r)[0].circuit == "dub-2"
    # Else its evidence's field; a sentence naming another circuit does not count.
    f = finding(circuit=None)
    f["evidence"][0] |= {"circuit": "dub-2", "text": "advertised over ams-1 (a sentence)"}
    r = report_from_dict(simple("a", 1, inet(), findings=[f], facts=facts))
    assert state.reported_asymmetries(r)[0].circuit == "dub-2"
    # Else the verdict's circuit; else none (two circuits, nothing says which).
    f = finding(circuit=None)
    f["evidence"][0]["circuit"] = None
    r = report_from_dict(simple("a", 1, er("dub-2"), findings=[f], facts=facts))
    assert state.reported_asymmetries(r)[0].circuit == "dub-2"
    r = report_from_dict(simple("a", 1, inet(), findings=[f], facts=facts))
    assert state.reported_asymmetries(r)[0].circuit == state.NO_CIRCUIT


def test_a_schema_1_finding_with_sentence_evidence_falls_back_to_the_only_circuit():
    r = report_from_dict(simple("a", 1, inet()))
    note = Evidence("note", "NAT 192.0.2.10 lies in a prefix advertised over ams-1")
    f = Finding("asymmetric-nat", "critical", evidence=(note,))
    r = replace(r, results=(replace(r.results[0], findings=(f,)),))
    (a,) = state.reported_asymmetries(r)
    assert a.circuit == "ams-1" and note.text in a.evidence


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
    assert a.evidence[1].startswith("reverse az-1 -> 192.0.2.10: expressroute/ams-1")


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
    rev = SitePath("az-1", "az", "198.51.100.5", PathKey("expressroute", "fra-1"), "198.51.100.5")
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
