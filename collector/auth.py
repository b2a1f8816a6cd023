"""Agent bearer tokens: random, stored as SHA-256 digests, bound to one agent,
its site and its role.

A token reads `erp_<id>_<secret>`: the id (public, 64 bits) finds the row, the
secret (256 bits) is what proves possession.  Only the SHA-256 digest of the
whole token is stored, and it is compared with `hmac.compare_digest`.  The
running collector keeps a copy of the table in memory (`TokenBook`) and
reloads it every few seconds, so `token add` / `token revoke` on the same
database take effect without a restart.

A token names the site and role its agent reports for (`token add AGENT --site
SITE --role ROLE`): one agent's token cannot overwrite another site's circuits
and NAT facts.  A token issued without them (before the upgrade, or without
the options) is bound by the first report it carries, and the binding is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import get_args

from agent.report import AgentRole
from collector.dialect import Connection

ROLES: tuple[str, ...] = get_args(AgentRole)

log = logging.getLogger(__name__)

PREFIX = "erp"
_TOKEN_RE = re.compile(r"^erp_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
AGENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> tuple[str, str]:
    token_id = secrets.token_hex(8)
    return token_id, f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    agent_id: str
    created_s: float
    revoked_s: float | None
    site: str | None = None  # None: bound by the next report
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Bearer:
    """Who a valid token speaks for."""

    agent_id: str
    token_id: str
    site: str | None
    role: str | None


def add(
    conn: Connection,
    agent_id: str,
    now_s: float,
    site: str | None = None,
    role: str | None = None,
) -> tuple[str, str]:
    """Create a token for the agent; return (token id, token).  The token is shown once."""
    if not AGENT_ID_RE.match(agent_id):
        raise ValueError(
            f"agent id {agent_id!r} is not valid: use letters, digits and . _ : @ - (at most 128)"
        )
    if site is not None and not 1 <= len(site) <= 1024:
        raise ValueError(f"site {site!r} is not valid: give the agent's [agent] site")
    if role is not None and role not in ROLES:
        raise ValueError(f"role {role!r} is not valid: use one of {', '.join(ROLES)}")
    token_id, token = new_token()
    conn.execute(
        "INSERT INTO tokens(id, agent_id, digest, created_s, site, role) VALUES (?,?,?,?,?,?)",
        (token_id, agent_id, digest(token), now_s, site, role),
    )
    return token_id, token


def revoke(conn: Connection, token_id: str, now_s: float) -> int:
    """Revoke one token by id, or every token of an agent when given an agent id."""
    cur = conn.execute(
        "UPDATE tokens SET revoked_s=? WHERE (id=? OR agent_id=?) AND revoked_s IS NULL",
        (now_s, token_id, token_id),
    )
    return cur.rowcount


class Revoked(Exception):
    """The token was revoked after the in-memory book was loaded."""


class Mismatch(Exception):
    """The report's site or role is not the one its token is bound to."""

    def __init__(self, field: str, bound: str, reported: str):
        super().__init__(field, bound, reported)
        self.field, self.bound, self.reported = field, bound, reported


def require_active(
    conn: Connection, token_id: str, site: str | None = None, role: str | None = None
) -> None:
    """Raise Revoked unless the token is active *now*, in the caller's transaction;
    Mismatch unless it is bound to this site and role (an unbound one is bound here).

    The book is refreshed every few seconds; checking inside the ingest
    transaction makes `token revoke` take effect from the moment it committed,
    and makes the first report's binding final before any other report is read.
    """
    row = conn.execute(
        "SELECT revoked_s, site, role, agent_id FROM tokens WHERE id=?", (token_id,)
    ).fetchone()
    if row is None or row[0] is not None:
        raise Revoked(token_id)
    for field, bound, reported in (("site", row[1], site), ("role", row[2], role)):
        if reported is None:
            continue
        if bound is None:
            conn.execute(f"UPDATE tokens SET {field}=? WHERE id=?", (reported, token_id))
            log.info(
                "token %s of agent %s is now bound to %s %r (its first report after the upgrade)",
                token_id,
                row[3],
                field,
                reported,
            )
        elif bound != reported:
            raise Mismatch(field, bound, reported)


def rows(conn: Connection) -> list[TokenRow]:
    return [
        TokenRow(*r)
        for r in conn.execute(
            "SELECT id, agent_id, created_s, revoked_s, site, role FROM tokens"
            " ORDER BY agent_id, created_s"
        )
    ]


def _active(conn: Connection) -> dict[str, tuple[Bearer, bytes]]:
    return {
        tid: (Bearer(agent, tid, site, role), dig)
        for tid, agent, dig, site, role in conn.execute(
            "SELECT id, agent_id, digest, site, role FROM tokens WHERE revoked_s IS NULL"
        )
    }


_NOBODY = Bearer("", "", None, None)


class TokenBook:
    """The active tokens, in memory; `identify` is what every request calls."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[Bearer, bytes]] = {}

    def load(self, conn: Connection) -> None:
        self._tokens = _active(conn)

    def verify(self, token: str) -> str | None:
        """The agent id the token belongs to, or None."""
        found = self.identify(token)
        return found.agent_id if found else None

    def identify(self, token: str) -> Bearer | None:
        """Who a valid token speaks for, or None."""
        m = _TOKEN_RE.match(token)
        presented = digest(token)
        entry = self._tokens.get(m.group(1)) if m else None
        # Compare even when the id is unknown, so timing says nothing about ids.
        bearer, stored = entry if entry else (_NOBODY, b"\0" * 32)
        ok = hmac.compare_digest(presented, stored)
        return bearer if ok and entry and m else None

    def __len__(self) -> int:
        return len(self._tokens)
