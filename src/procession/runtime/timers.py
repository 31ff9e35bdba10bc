"""Firing due timers: each becomes a delivery to its instance, in one transaction."""

from __future__ import annotations

from procession.store.base import Tx


def fire_due(tx: Tx, now: float, limit: int = 1000) -> int:
    rows = tx.rows("claim_timers", now=now, limit=limit)
    tx.many(
        "insert_inbox",
        [
            {
                "process": process,
                "instance_id": instance_id,
                "routing": "timer",
                "type": type_,
                "schema_version": schema_version,
                "data": data,
                "metadata": meta,
                "available_at": now,
            }
            for process, instance_id, _name, _due, type_, schema_version, data, meta in rows
        ],
    )
    tx.many(
        "delete_timer",
        [{"process": r[0], "instance_id": r[1], "name": r[2], "due_at": r[3]} for r in rows],
    )
    return len(rows)
