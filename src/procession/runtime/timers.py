"""Firing due timers: each becomes a delivery to its instance, in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from procession.store.base import Tx
from procession.store.work import Routing, instances, timers


def fire_due(
    tx: Tx,
    now: float,
    limit: int = 1000,
    hand_off: Callable[[Tx, float, list[dict[str, Any]]], int] | None = None,
) -> int:
    """Turn due timers into deliveries: queued, or given to `hand_off` (the steps, which
    run those whose instance is free at once and queue the others)."""
    due = timers.claim_due(tx, now, limit)
    rows = [
        {
            "process": t.process,
            "instance_id": t.instance_id,
            "routing": Routing.TIMER,
            "type": t.type,
            "schema_version": t.schema_version,
            "data": t.data,
            "metadata": t.metadata,
        }
        for t in due
    ]
    timers.fired(tx, due)
    if hand_off is not None and rows:
        hand_off(tx, now, rows)
    else:
        instances.redeliver(tx, rows, now)
    return len(due)
