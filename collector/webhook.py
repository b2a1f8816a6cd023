"""Generic JSON webhook (chat tools): the alerts' state changes, once each.

The body mirrors Alertmanager's webhook shape, which most chat bridges
already understand; unlike Alertmanager it gets no periodic re-sends.
"""

from __future__ import annotations

from typing import Any

VERSION = "erpath.webhook/1"


def payload(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": VERSION,
        "source": "erpath-collector",
        "status": "firing" if firing else "resolved",
        "alerts": alerts,
    }
