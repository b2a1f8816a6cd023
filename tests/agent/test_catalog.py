"""The built-in catalog of Power Platform endpoints."""

import pytest

from agent import catalog
from agent.catalog import CATALOG, CATALOG_ROLES, EXPECTS, CatalogEntry, lookup, unprobed_note


def test_entries_are_well_formed():
    names = [e.name for e in CATALOG]
    assert len(names) == len(set(names))
    for e in CATALOG:
        assert e.name == e.name.lower()
        assert e.role in CATALOG_ROLES
        assert e.expect in (*EXPECTS, None)
        assert e.wildcard == ("*" in e.name)
        assert e.note and e.source


def test_the_named_endpoints_are_there():
    names = {e.name for e in CATALOG}
    for must in (
        "make.powerapps.com",
        "apps.powerapps.com",
        "content.powerapps.com",
        "make.powerautomate.com",
        "flow.microsoft.com",
        "api.flow.microsoft.com",
        "api.bap.microsoft.com",
        "api.powerplatform.com",
        "api.powerapps.com",
        "login.microsoftonline.com",
        "graph.microsoft.com",
        "res.cdn.office.net",
        "*.azureedge.net",
        "*.crm*.dynamics.com",
        "*.api.powerplatform.com",
        "browser.events.data.microsoft.com",
        "dc.services.visualstudio.com",
    ):
        assert must in names


def test_cdn_content_is_expected_on_a_cdn():
    # ExpressRoute never carries Azure CDN / Front Door: anything else is a finding.
    for e in CATALOG:
        if e.role == "cdn":
            assert e.expect == "cdn", e.name


def test_wildcard_flag_must_match_the_name():
    with pytest.raises(ValueError):
        CatalogEntry("*.example.net", "api", None, False, "n", "s")


@pytest.mark.parametrize(
    ("host", "entry"),
    [
        ("make.powerapps.com", "make.powerapps.com"),
        ("MAKE.PowerApps.com.", "make.powerapps.com"),
        ("contoso.crm.dynamics.com", "*.crm*.dynamics.com"),
        ("contoso.crm4.dynamics.com", "*.crm*.dynamics.com"),
        ("contoso.api.crm4.dynamics.com", "*.crm*.dynamics.com"),
        ("api.powerplatform.com", "api.powerplatform.com"),  # exact before wildcard
        ("abc.environment.api.powerplatform.com", "*.api.powerplatform.com"),
        ("pa-static.azureedge.net", "*.azureedge.net"),
        ("europe-001.azure-apim.net", "*.azure-apim.net"),
    ],
)
def test_lookup(host, entry):
    found = lookup(host)
    assert found is not None and found.name == entry


@pytest.mark.parametrize(
    "host", ["example.com", "crm.dynamics.com", "azureedge.net", "powerapps.com"]
)
def test_lookup_misses(host):
    assert lookup(host) is None


def test_concrete_and_wildcard_split_the_catalog():
    assert set(catalog.concrete_entries()) | set(catalog.wildcard_entries()) == set(CATALOG)
    assert all(not e.wildcard for e in catalog.concrete_entries())
    assert all(e.wildcard for e in catalog.wildcard_entries())


def test_unprobed_note_says_what_to_add():
    (entry,) = [e for e in CATALOG if e.name == "*.crm*.dynamics.com"]
    assert unprobed_note(entry) == (
        "*.crm*.dynamics.com (Dataverse organisation, e.g. contoso.crm4.dynamics.com; its CDN-served part "
        'is not ExpressRoute) is not probed: it is a wildcard; add [[target]] name = "contoso.crm4.dynamics.com" '
        "(your real host) to probe it"
    )
