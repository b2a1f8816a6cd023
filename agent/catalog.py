"""The built-in catalog: the endpoints Power Platform clients talk to.

Taken from Microsoft's required-services lists ("Power Platform URLs and IP
address ranges", Power Apps "Required services", Power Automate "IP address
configuration").  Each entry says what the endpoint is for (`role`) and, where
the network fact is fixed, which path it must take (`expect`):

- `cdn`: content served by Azure CDN / Front Door, which ExpressRoute never
  carries, so "internet via a CDN" is the only healthy answer.
- `internet`: endpoints outside every ExpressRoute BGP community.
- `None`: depends on the site (its circuits and route filter), so the
  classifier's default rule decides at run time.

Wildcard entries (Dataverse organisations, regional connector hosts) cannot
be probed as they stand: a site names one concrete host in its config (a
`[[target]]` whose name matches the pattern), and until it does, `check-config`
and `probe once` say the wildcard is not probed (`unprobed_note`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

CatalogRole = Literal["service", "api", "auth", "cdn", "telemetry"]
# "reverse" is a target an azure-side or datacenter agent traces back to a
# site's NAT address; it never comes from the catalog.
TargetRole = Literal["service", "api", "auth", "cdn", "telemetry", "reverse"]
Expect = Literal["expressroute", "internet", "cdn"]

CATALOG_ROLES: tuple[str, ...] = ("service", "api", "auth", "cdn", "telemetry")
TARGET_ROLES: tuple[str, ...] = (*CATALOG_ROLES, "reverse")
EXPECTS: tuple[str, ...] = ("expressroute", "internet", "cdn")

_PP_URLS = "https://learn.microsoft.com/power-platform/admin/online-requirements"
_PA_REQUIRED = "https://learn.microsoft.com/power-apps/limits-and-config#required-services"
_PAU_REQUIRED = "https://learn.microsoft.com/power-automate/ip-address-configuration"
_ER_PLANNING = "Power Platform ExpressRoute planning guide (CDN content never crosses ExpressRoute)"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    name: str
    role: CatalogRole
    expect: Expect | None
    wildcard: bool
    note: str
    source: str

    def __post_init__(self) -> None:
        # The flag is spelled out for readers of the table; keep it honest.
        if self.wildcard != ("*" in self.name):
            raise ValueError(f"catalog entry {self.name}: wildcard flag disagrees with its name")

    def matches(self, host: str) -> bool:
        """True when `host` is this entry's name, or a host its wildcard covers."""
        host = host.lower().rstrip(".")
        if not self.wildcard:
            return host == self.name
        return fnmatchcase(host, self.name)


def _e(name: str, role: CatalogRole, expect: Expect | None, note: str, source: str) -> CatalogEntry:
    return CatalogEntry(name, role, expect, "*" in name, note, source)


CATALOG: tuple[CatalogEntry, ...] = (
    # ---- portals and players: what users see first when a path breaks
    _e("make.powerapps.com", "service", None, "Power Apps maker portal", _PA_REQUIRED),
    _e("apps.powerapps.com", "service", None, "Power Apps player (canvas apps)", _PA_REQUIRED),
    _e("make.powerautomate.com", "service", None, "Power Automate portal", _PAU_REQUIRED),
    _e(
        "flow.microsoft.com",
        "service",
        None,
        "former Power Automate portal, still linked",
        _PAU_REQUIRED,
    ),
    _e(
        "admin.powerplatform.microsoft.com",
        "service",
        None,
        "Power Platform admin center",
        _PP_URLS,
    ),
    # ---- APIs behind the portals
    _e("api.powerapps.com", "api", None, "Power Apps resource provider API", _PA_REQUIRED),
    _e("api.flow.microsoft.com", "api", None, "Power Automate API", _PAU_REQUIRED),
    _e(
        "api.bap.microsoft.com",
        "api",
        None,
        "Business Application Platform API (environments)",
        _PP_URLS,
    ),
    _e("api.powerplatform.com", "api", None, "Power Platform API", _PP_URLS),
    _e(
        "management.azure.com",
        "api",
        None,
        "Azure Resource Manager, used by Power Automate",
        _PAU_REQUIRED,
    ),
    _e(
        "graph.microsoft.com",
        "api",
        None,
        "Microsoft Graph: user profiles and photos",
        _PAU_REQUIRED,
    ),
    _e(
        "*.api.powerplatform.com",
        "api",
        None,
        "environment-scoped Power Platform API hosts, <environment>.environment.api.powerplatform.com",
        _PP_URLS,
    ),
    _e(
        "*.crm*.dynamics.com",
        "api",
        None,
        "Dataverse organisation, e.g. contoso.crm4.dynamics.com; its CDN-served part is not ExpressRoute",
        _PA_REQUIRED,
    ),
    _e(
        "*.azure-apim.net",
        "api",
        None,
        "connector runtime, API Management, one host per region",
        _PAU_REQUIRED,
    ),
    _e("*.azure-apihub.net", "api", None, "connector runtime, one host per region", _PAU_REQUIRED),
    _e("*.logic.azure.com", "api", None, "Logic Apps runtime behind cloud flows", _PAU_REQUIRED),
    _e(
        "*.blob.core.windows.net",
        "service",
        None,
        "Azure Storage: app packages, exported flows",
        _PA_REQUIRED,
    ),
    _e(
        "*.powerplatformusercontent.com",
        "service",
        None,
        "user content of Power Apps and Power Pages",
        _PP_URLS,
    ),
    # ---- sign-in
    _e("login.microsoftonline.com", "auth", None, "Microsoft Entra ID sign-in", _PAU_REQUIRED),
    _e("login.microsoft.com", "auth", None, "Microsoft Entra ID sign-in", _PAU_REQUIRED),
    _e(
        "login.windows.net", "auth", None, "Microsoft Entra ID sign-in (legacy name)", _PAU_REQUIRED
    ),
    _e(
        "login.live.com",
        "auth",
        "internet",
        "Microsoft account sign-in: in no ExpressRoute BGP community, so always internet",
        _PAU_REQUIRED,
    ),
    _e(
        "secure.aadcdn.microsoftonline-p.com",
        "auth",
        "cdn",
        "sign-in page scripts and images, served by a CDN",
        _PAU_REQUIRED,
    ),
    # ---- static content: CDN / Front Door, never over ExpressRoute
    _e(
        "content.powerapps.com",
        "cdn",
        "cdn",
        "Power Apps static content (scripts, styles)",
        _PA_REQUIRED,
    ),
    _e("res.cdn.office.net", "cdn", "cdn", "Office shared static content", _ER_PLANNING),
    _e("*.azureedge.net", "cdn", "cdn", "Azure CDN hosts serving portal content", _PA_REQUIRED),
    _e("*.azurefd.net", "cdn", "cdn", "Azure Front Door hosts", _ER_PLANNING),
    # ---- telemetry: failures here never break users, but show the path of Office common services
    _e(
        "browser.events.data.microsoft.com",
        "telemetry",
        None,
        "client telemetry (One Collector)",
        _PP_URLS,
    ),
    _e(
        "dc.services.visualstudio.com",
        "telemetry",
        None,
        "Application Insights telemetry",
        _PA_REQUIRED,
    ),
)


def lookup(host: str) -> CatalogEntry | None:
    """The entry for `host`: its exact entry first, else the first wildcard covering it."""
    host = host.lower().rstrip(".")
    for entry in CATALOG:
        if not entry.wildcard and entry.name == host:
            return entry
    for entry in CATALOG:
        if entry.wildcard and entry.matches(host):
            return entry
    return None


def concrete_entries() -> tuple[CatalogEntry, ...]:
    return tuple(e for e in CATALOG if not e.wildcard)


def wildcard_entries() -> tuple[CatalogEntry, ...]:
    return tuple(e for e in CATALOG if e.wildcard)


def example_host(pattern: str) -> str:
    """A concrete name of a wildcard's shape, for messages that say what to configure."""
    return pattern.replace("*.crm*.", "contoso.crm4.").replace("*", "contoso")


def unprobed_note(entry: CatalogEntry) -> str:
    """The line check output prints for a wildcard entry nobody named a host for."""
    return (
        f"{entry.name} ({entry.note}) is not probed: it is a wildcard; "
        f'add [[target]] name = "{example_host(entry.name)}" (your real host) to probe it'
    )
