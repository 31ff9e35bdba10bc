"""Durable timers: set, cancel, and claim those due."""

from __future__ import annotations

from typing import Any

from procession.store.base import Tx
from procession.store.work.records import DueTimer, TimerRow


def set_timer(
    tx: Tx, process: str, instance_id: str, name: str, due_at: float, message: dict[str, Any]
) -> None:
    """Set (or reset) a timer; `message`: its message columns, a fresh dict this completes."""
    message["process"], message["instance_id"] = process, instance_id
    message["name"], message["due_at"] = name, due_at
    tx.defer_ordered("set_timer", message)


def cancel(tx: Tx, process: str, instance_id: str, name: str) -> None:
    tx.defer("cancel_timer", process=process, instance_id=instance_id, name=name)


def cancel_all(tx: Tx, process: str, instance_id: str) -> None:
    tx.defer("cancel_all_timers", process=process, instance_id=instance_id)


def claim_due(tx: Tx, now: float, limit: int) -> list[DueTimer]:
    return tx.records(DueTimer, "claim_timers", now=now, limit=limit)


def fired(tx: Tx, timers: list[DueTimer]) -> None:
    """Remove fired timers (each only if not set again meanwhile: its due time is checked)."""
    tx.many(
        "delete_timer",
        [
            {"process": t.process, "instance_id": t.instance_id, "name": t.name, "due_at": t.due_at}
            for t in timers
        ],
    )


def of_instance(tx: Tx, process: str, instance_id: str) -> list[TimerRow]:
    return tx.records(TimerRow, "list_timers", process=process, instance_id=instance_id)


def any_set(tx: Tx) -> bool:
    return tx.row("any_timer") is not None


def count(tx: Tx) -> int:
    return int(tx.scalar("count_timers"))


def next_due(tx: Tx, now: float) -> float | None:
    due = tx.scalar("next_timer_due", now=now)
    return None if due is None else float(due)
