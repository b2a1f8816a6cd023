"""Agent bearer tokens: random, stored as SHA-256 digests, bound to one agent.

A token reads `erp_<id>_<secret>`: the id (public, 64 bits) finds the row, the
secret (256 bits) is what proves possession.  Only the SHA-256 digest of the
whole token is stored, and it is compared with `hmac.compare_digest`.  The
running collector keeps a copy of the table in memory (`TokenBook`) and
reloads it every few seconds, so `token add` / `token revoke` on the same
database take effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass

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


def add(conn: sqlite3.Connection, agent_id: str, now_s: float) -> tuple[str, str]:
    """Create a token for the agent; return (token id, token).  The token is shown once."""
    if not AGENT_ID_RE.match(agent_id):
        raise ValueError(
            f"agent id {agent_id!r} is not valid: use letters, digits and . _ : @ - (at most 128)"
        )
    token_id, token = new_token()
    conn.execute(
        "INSERT INTO tokens(id, agent_id, digest, created_s) VALUES (?,?,?,?)",
        (token_id, agent_id, digest(token), now_s),
    )
    return token_id, token


def revoke(conn: sqlite3.Connection, token_id: str, now_s: float) -> int:
    """Revoke one token by id, or every token of an agent when given an agent id."""
    cur = conn.execute(
        "UPDATE tokens SET revoked_s=? WHERE (id=? OR agent_id=?) AND revoked_s IS NULL",
        (now_s, token_id, token_id),
    )
    return cur.rowcount


class Revoked(Exception):
    """The token was revoked after the in-memory book was loaded."""


def require_active(conn: sqlite3.Connection, token_id: str) -> None:
    """Raise Revoked unless the token is active *now*, in the caller's transaction.

    The book is refreshed every few seconds; checking inside the ingest
    transaction makes `token revoke` take effect from the moment it committed.
    """
    row = conn.execute("SELECT revoked_s FROM tokens WHERE id=?", (token_id,)).fetchone()
    if row is None or row[0] is not None:
        raise Revoked(token_id)


def rows(conn: sqlite3.Connection) -> list[TokenRow]:
    return [
        TokenRow(*r)
        for r in conn.execute(
            "SELECT id, agent_id, created_s, revoked_s FROM tokens ORDER BY agent_id, created_s"
        )
    ]


def _active(conn: sqlite3.Connection) -> dict[str, tuple[str, bytes]]:
    return {
        tid: (agent, dig)
        for tid, agent, dig in conn.execute(
            "SELECT id, agent_id, digest FROM tokens WHERE revoked_s IS NULL"
        )
    }


class TokenBook:
    """The active tokens, in memory; `verify` is what every request calls."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, bytes]] = {}

    def load(self, conn: sqlite3.Connection) -> None:
        self._tokens = _active(conn)

    def verify(self, token: str) -> str | None:
        """The agent id the token belongs to, or None."""
        found = self.identify(token)
        return found[0] if found else None

    def identify(self, token: str) -> tuple[str, str] | None:
        """(agent id, token id) of a valid token, or None."""
        m = _TOKEN_RE.match(token)
        presented = digest(token)
        entry = self._tokens.get(m.group(1)) if m else None
        # Compare even when the id is unknown, so timing says nothing about ids.
        agent, stored = entry if entry else (None, b"\0" * 32)
        ok = hmac.compare_digest(presented, stored)
        return (agent, m.group(1)) if ok and entry and agent and m else None

    def __len__(self) -> int:
        return len(self._tokens)
