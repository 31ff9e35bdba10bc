"""Process instances and their inbox: deliveries, claims, failures, blocks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from procession.states import Routing
from procession.store.base import Tx
from procession.store.work.records import ClaimedInstance, Delivery, InstanceRow, ParkedDelivery

Key = tuple[str, str]


def claim(tx: Tx, now: float, limit: int) -> list[ClaimedInstance]:
    """Instances with deliveries ready, oldest delivery first; on PostgreSQL locked whole
    (SKIP LOCKED), so two workers never run steps of one instance at once."""
    tx.run("claim_plan")
    return tx.records(ClaimedInstance, "claim_instances", now=now, limit=limit, scan=limit * 8)


def deliveries_of(tx: Tx, keys: Iterable[Key]) -> dict[Key, list[Delivery]]:
    """Every delivery of the given instances, oldest first, in one query."""
    wanted = set(keys)
    found: dict[Key, list[Delivery]] = {}
    if not wanted:
        return found
    ids = tx.store.backend.array_param(sorted({k[1] for k in wanted}))
    for delivery in tx.records(Delivery, "inbox_of_instances", ids=ids):
        key = (delivery.process, delivery.instance_id)
        if key in wanted:
            found.setdefault(key, []).append(delivery)
    return found


def deliver(tx: Tx, rows: list[dict[str, Any]], now: float) -> None:
    """Queue deliveries (each row: process, instance_id, routing and the message columns),
    creating the instances they are for."""
    ensure(tx, rows, now)
    tx.many("insert_inbox", [{"available_at": now, **row} for row in rows])


def ensure(tx: Tx, rows: list[dict[str, Any]], now: float) -> None:
    """Create the instances deliveries are for (those that do not exist yet)."""
    seen: set[Key] = set()
    instances = []
    for row in rows:
        key = (row["process"], row["instance_id"])
        if key not in seen:
            seen.add(key)
            instances.append({"process": key[0], "instance_id": key[1], "now": now})
    tx.many("ensure_instance", instances)


def claim_handoff(tx: Tx, process: str, instance_ids: list[str]) -> list[ClaimedInstance]:
    """Those of the instances that can take deliveries without the inbox: not blocked,
    nothing of theirs queued; on PostgreSQL locked (SKIP LOCKED) like a claim."""
    ids = tx.store.backend.array_param(instance_ids)
    return tx.records(ClaimedInstance, "claim_handoff", process=process, ids=ids)


def existing(tx: Tx, process: str, instance_ids: list[str]) -> set[str]:
    """Which of the instances exist."""
    ids = tx.store.backend.array_param(instance_ids)
    return {str(r[0]) for r in tx.rows("existing_instances", process=process, ids=ids)}


def create(tx: Tx, fields: dict[str, Any]) -> None:
    """Write an instance made in this transaction (the columns of `save`)."""
    tx.defer_row("create_instance", fields)


def queue_failed(
    tx: Tx, row: dict[str, Any], error: str, *, parked: bool, retry_at: float, now: float
) -> None:
    """Queue a delivery that failed before it was ever queued (a handed-off one), with its
    first failure; in order with `redeliver`, which queues the ones behind it."""
    tx.defer_ordered(
        "insert_failed_inbox",
        {
            **row,
            "available_at": retry_at,
            "parked": int(parked),
            "error": error,
            "first_failed_at": now,
        },
    )


def redeliver(tx: Tx, rows: list[dict[str, Any]], now: float) -> None:
    """Queue deliveries to instances that exist already (a fired timer's)."""
    tx.many("insert_inbox", [{"available_at": now, **row} for row in rows])


def delivery_row(
    process: str, instance_id: str, routing: Routing, message: dict[str, Any]
) -> dict[str, Any]:
    return {"process": process, "instance_id": instance_id, "routing": routing, **message}


def consumed(tx: Tx, delivery_id: int) -> None:
    tx.defer_row("delete_inbox", {"id": delivery_id})


def failed(
    tx: Tx, delivery_id: int, error: str, *, parked: bool, retry_at: float, now: float
) -> None:
    tx.defer_any(
        "fail_inbox",
        id=delivery_id,
        error=error,
        parked=int(parked),
        available_at=retry_at,
        now=now,
    )


def block(tx: Tx, key: Key, *, parked: bool, until: float) -> None:
    tx.defer_any(
        "block_instance", process=key[0], instance_id=key[1], parked=int(parked), until=until
    )


def unblock(tx: Tx, key: Key) -> None:
    tx.defer_any("unblock_instance", process=key[0], instance_id=key[1])


def park(tx: Tx, key: Key, now: float) -> None:
    tx.defer_any("park_instance", process=key[0], instance_id=key[1], now=now)
    block(tx, key, parked=True, until=0.0)


def save(tx: Tx, fields: dict[str, Any]) -> None:
    """The one save of a claimed instance in this transaction: every column of
    `save_instance` (process, instance_id, now, status, state, version, parked,
    last_position, seen, timers, wait_until)."""
    tx.defer_row("save_instance", fields)


def get(tx: Tx, process: str, instance_id: str) -> InstanceRow | None:
    return tx.record(InstanceRow, "get_instance", process=process, instance_id=instance_id)


def parked(tx: Tx) -> list[ParkedDelivery]:
    return tx.records(ParkedDelivery, "parked_inbox")


def parked_one(tx: Tx, delivery_id: int) -> ParkedDelivery | None:
    return tx.record(ParkedDelivery, "parked_delivery", id=delivery_id)


def resume(tx: Tx, key: Key, now: float) -> None:
    tx.run("resume_instance", process=key[0], instance_id=key[1], now=now)
    tx.run("unblock_instance", process=key[0], instance_id=key[1])


def retry_parked(tx: Tx, delivery_id: int, now: float) -> bool:
    found = parked_one(tx, delivery_id)
    if found is None or not tx.run("unpark_inbox", id=delivery_id, now=now):
        return False
    resume(tx, (found.process, found.instance_id), now)
    return True


def skip_parked(tx: Tx, delivery_id: int, now: float) -> bool:
    """Discard a parked delivery; an event counts as handled by its instance (as a step's
    `SkipMessage` does), so a rewound router's redelivery of it is dropped, not run."""
    found = parked_one(tx, delivery_id)
    if found is None or not tx.run("skip_inbox", id=delivery_id):
        return False
    key = (found.process, found.instance_id)
    position = msgspec.json.decode(found.metadata).get("position")
    if position is not None:
        tx.run("raise_last_position", process=key[0], instance_id=key[1], position=position)
    resume(tx, key, now)
    return True


def ready(tx: Tx, now: float) -> bool:
    return tx.row("ready_inbox", now=now) is not None


def next_due(tx: Tx, now: float) -> float | None:
    """When an instance waiting out a retry may run again (parked ones wait for an operator)."""
    due = tx.scalar("next_inbox_due", now=now)
    return None if due is None else float(due)


def count(tx: Tx) -> int:
    return int(tx.scalar("count_inbox"))
