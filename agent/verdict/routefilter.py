"""Which circuits Microsoft advertises a destination over, by their route filters.

On Microsoft peering Microsoft advertises a prefix over a circuit only when
the circuit's route filter allows the prefix's BGP community, the
subscription may use that community (`isAuthorizedToUse`), and -- for a
regional community on a Standard circuit -- the region is in the circuit's
geopolitical region.  A community missing from the filter is the most common
reason a Power Platform endpoint goes over the internet.

`advertisement(address, site, communities)` answers per circuit; it is None
when no route filter is known (no communities file, or no circuit names its
filter): then the old rule stands, "the site has a circuit".  A circuit
without a known filter is assumed to advertise every Microsoft prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.report import Circuit, SiteFacts
from agent.verdict import geography
from agent.verdict.communities import BgpCommunities, Community, CommunityMatch

State = Literal["advertised", "filter-unknown", "other-geography", "not-authorized", "excluded"]
ADVERTISING: frozenset[State] = frozenset({"advertised", "filter-unknown"})
# When several communities hold the address, the best outcome speaks for the circuit.
_RANK: dict[State, int] = {
    "advertised": 0,
    "filter-unknown": 1,
    "other-geography": 2,
    "not-authorized": 3,
    "excluded": 4,
}


@dataclass(frozen=True, slots=True)
class CircuitAdvert:
    """What circuit's route filter does with the destination, and the community that decides."""

    circuit: Circuit
    state: State
    community: Community | None = None  # None: the address is in no community (or no filter)
    prefix: str | None = None  # the community's prefix holding the address

    @property
    def advertises(self) -> bool:
        return self.state in ADVERTISING


@dataclass(frozen=True, slots=True)
class Advertisement:
    address: str
    matches: tuple[CommunityMatch, ...]  # communities holding the address, longest prefix first
    circuits: tuple[CircuitAdvert, ...]

    def advertising(self) -> tuple[CircuitAdvert, ...]:
        return tuple(c for c in self.circuits if c.advertises)

    def of(self, circuit: str | None) -> CircuitAdvert | None:
        return next((c for c in self.circuits if c.circuit.name == circuit), None)


def known(site: SiteFacts, communities: BgpCommunities | None) -> bool:
    """Whether route filters can be read: a communities file and a circuit naming its filter."""
    return communities is not None and any(c.route_filter for c in site.circuits)


def advertisement(
    address: str | None, site: SiteFacts, communities: BgpCommunities | None
) -> Advertisement | None:
    if not address or communities is None or not known(site, communities):
        return None
    matches = communities.lookup(address)
    return Advertisement(address, matches, tuple(_circuit(c, matches) for c in site.circuits))


def _circuit(circuit: Circuit, matches: tuple[CommunityMatch, ...]) -> CircuitAdvert:
    if circuit.route_filter is None:
        return CircuitAdvert(circuit, "filter-unknown")
    if not matches:
        return CircuitAdvert(circuit, "excluded")
    allowed = set(circuit.route_filter_communities)
    outcomes = [
        CircuitAdvert(circuit, _state(circuit, m.community, allowed), m.community, m.prefix)
        for m in matches
    ]
    return min(outcomes, key=lambda o: _RANK[o.state])


def _state(circuit: Circuit, community: Community, allowed: set[str]) -> State:
    if community.value not in allowed:
        return "excluded"
    if not community.authorized:
        return "not-authorized"
    if other_geography(circuit, community):
        return "other-geography"
    return "advertised"


def other_geography(circuit: Circuit, community: Community) -> bool:
    """A regional community a Standard circuit does not get: another geopolitical region."""
    if circuit.sku == "premium" or not community.region:
        return False
    region = geography.region_geography(community.region)
    location = geography.location_geography(circuit.location)
    return region is not None and location is not None and region.geography != location.geography


def preferred(
    adverts: tuple[CircuitAdvert, ...], prefer: tuple[str, ...]
) -> tuple[CircuitAdvert, str]:
    """The circuit the destination should take among those advertising it, and why that one.

    The failover order (the target's own, else the site's) ranks them; without
    one the first configured circuit is taken.
    """
    for name in prefer:
        hit = next((a for a in adverts if a.circuit.name == name), None)
        if hit is not None:
            if len(adverts) == 1:
                return hit, ""
            return hit, f", first of them in the failover order ({', '.join(prefer)})"
    return adverts[0], ""
