"""Batches and their items: one row per target, counted through an index."""

from __future__ import annotations

from typing import Any

from procession.states import BatchStatus, ItemStatus
from procession.store.base import Tx
from procession.store.work.records import BatchControl, BatchRow


def insert(tx: Tx, **columns: Any) -> None:
    """Record a new batch (ignored if its batch_id exists: starting is idempotent)."""
    tx.defer("insert_batch", **columns)


def active_ids(tx: Tx) -> list[str]:
    return [str(row[0]) for row in tx.rows("active_batch_ids")]


def active(tx: Tx) -> list[BatchRow]:
    return tx.records(BatchRow, "active_batches")


def lock(tx: Tx, batch_id: str) -> BatchRow | None:
    """The batch as it is once locked (PostgreSQL: SKIP LOCKED), if still active."""
    return tx.record(BatchRow, "lock_batch", batch_id=batch_id)


def get(tx: Tx, batch_id: str) -> BatchRow | None:
    return tx.record(BatchRow, "get_batch", batch_id=batch_id)


def newest_ids(tx: Tx, limit: int, after: str | None = None) -> list[str]:
    """Batch ids, newest first; with `after`, those that come after that batch."""
    if after is None:
        return [str(row[0]) for row in tx.rows("list_batches", limit=limit)]
    return [str(row[0]) for row in tx.rows("list_batches_after", limit=limit, after=after)]


def advance_cursor(
    tx: Tx, batch_id: str, cursor: str | None, added: int, status: BatchStatus
) -> None:
    tx.defer("advance_batch_cursor", batch_id=batch_id, cursor=cursor, added=added, status=status)


def add_items(tx: Tx, batch_id: str, targets: list[str], now: float) -> None:
    tx.many(
        "insert_batch_item", [{"batch_id": batch_id, "target_id": t, "now": now} for t in targets]
    )


def dispatched_count(tx: Tx, batch_id: str) -> int:
    return int(tx.scalar("count_in_flight", batch_id=batch_id))


def pending_targets(tx: Tx, batch_id: str, limit: int) -> list[str]:
    return [str(r[0]) for r in tx.rows("pending_items", batch_id=batch_id, limit=limit)]


def move_items(
    tx: Tx, batch_id: str, targets: list[str], to: ItemStatus, from_: ItemStatus, now: float
) -> None:
    tx.many(
        "set_item_status",
        [
            {
                "batch_id": batch_id,
                "target_id": t,
                "status": to,
                "detail": None,
                "now": now,
                "from_status": from_,
            }
            for t in targets
        ],
    )


def move_item(
    tx: Tx,
    batch_id: str,
    target: str,
    to: ItemStatus,
    from_: ItemStatus,
    detail: str | None,
    now: float,
) -> None:
    tx.defer_any(
        "set_item_status",
        batch_id=batch_id,
        target_id=target,
        status=to,
        detail=detail,
        now=now,
        from_status=from_,
    )


def finish_awaiting(
    tx: Tx, target_id: str, outcome: ItemStatus, detail: str, now: float, position: int
) -> None:
    """Every item of the target whose command ran before the outcome event at `position`
    was written finishes with `outcome`."""
    tx.defer(
        "finish_open_items",
        target_id=target_id,
        status=outcome,
        detail=detail,
        now=now,
        position=position,
    )


def await_item(tx: Tx, batch_id: str, target: str, after: int, now: float) -> None:
    """A dispatched item's command ran, after log position `after`: it awaits its outcome."""
    tx.defer_any("await_item", batch_id=batch_id, target_id=target, after=after, now=now)


def has_open_items(tx: Tx, batch_id: str) -> bool:
    return bool(tx.rows("batch_has_open_items", batch_id=batch_id))


def counts(tx: Tx, batch_id: str) -> dict[ItemStatus, int]:
    return {ItemStatus(s): int(n) for s, n in tx.rows("batch_counts", batch_id=batch_id)}


def last_finished_at(tx: Tx, batch_id: str) -> float | None:
    row = tx.row("batch_last_update", batch_id=batch_id)
    return None if row is None or row[1] is None else float(row[1])


def cancel(tx: Tx, batch_id: str, now: float, superseded_by: str | None) -> None:
    """Cancel items not yet dispatched (of a batch still at work); dispatched ones finish."""
    tx.defer("cancel_pending_items", batch_id=batch_id, now=now)
    tx.defer(
        "set_batch_status",
        batch_id=batch_id,
        status=BatchStatus.CANCELLING,
        superseded_by=superseded_by,
    )


def finish(tx: Tx, batch_id: str, status: BatchStatus, now: float) -> bool:
    """Complete a batch still at work; False if it already was (the owner is told once)."""
    return tx.run("finish_batch", batch_id=batch_id, status=status, now=now) == 1


# -- control (migration 005) ------------------------------------------------------------------


def control(tx: Tx, batch_id: str) -> BatchControl | None:
    return tx.record(BatchControl, "batch_control", batch_id=batch_id)


def lock_control(tx: Tx, batch_id: str) -> BatchControl | None:
    """The batch's controls, its row locked until commit (PostgreSQL: waiting for a worker
    stepping it)."""
    return tx.record(BatchControl, "lock_batch_control", batch_id=batch_id)


def set_paused(tx: Tx, batch_id: str, paused: bool) -> None:
    tx.defer("set_batch_paused", batch_id=batch_id, paused=int(paused))


def set_throttle(
    tx: Tx, batch_id: str, max_in_flight: int, rate_items: int | None, per_seconds: float | None
) -> None:
    tx.defer(
        "set_batch_throttle",
        batch_id=batch_id,
        max_in_flight=max_in_flight,
        rate_items=rate_items,
        rate_per_seconds=per_seconds,
    )


def set_rate_at_start(
    tx: Tx, batch_id: str, owner_instance: str, items: int, per_seconds: float, now: float
) -> None:
    """The rate limit a StartBatch declares, on the row that start inserted only."""
    tx.defer(
        "set_batch_rate_at_start",
        batch_id=batch_id,
        owner_instance=owner_instance,
        rate_items=items,
        rate_per_seconds=per_seconds,
        now=now,
    )


def dispatch_items(tx: Tx, batch_id: str, targets: list[str], now: float) -> None:
    """Pending items dispatched at `now` (the time the rate limit counts)."""
    tx.many("dispatch_item", [{"batch_id": batch_id, "target_id": t, "now": now} for t in targets])


def dispatched_since(tx: Tx, batch_id: str, since: float) -> int:
    """Items dispatched strictly after `since`."""
    return int(tx.scalar("count_dispatched_since", batch_id=batch_id, since=since))


def first_dispatched_since(tx: Tx, batch_id: str, since: float) -> float | None:
    found = tx.scalar("first_dispatched_since", batch_id=batch_id, since=since)
    return None if found is None else float(found)
