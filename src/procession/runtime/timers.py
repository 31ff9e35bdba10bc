"""Firing due timers: each becomes a delivery to its instance, in one transaction."""

from __future__ import annotations

from procession.store.base import Tx
from procession.store.work import Routing, instances, timers


def fire_due(tx: Tx, now: float, limit: int = 1000) -> int:
    due = timers.claim_due(tx, now, limit)
    instances.redeliver(
        tx,
        [
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
        ],
        now,
    )
    timers.fired(tx, due)
    return len(due)
