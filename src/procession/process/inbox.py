"""Deliveries: a message for one process instance, kept in order until its step commits."""

from __future__ import annotations

from typing import Any

from procession.messages import Message
from procession.runtime.envelope import message_row
from procession.store.base import Tx


def deliver(
    tx: Tx,
    process: str,
    instance_id: str,
    routing: str,
    message: Message,
    meta: dict[str, Any],
    now: float,
) -> None:
    tx.defer("ensure_instance", process=process, instance_id=instance_id, now=now)
    row = message_row(tx.store.registry, message, meta)
    tx.defer(
        "insert_inbox",
        process=process,
        instance_id=instance_id,
        routing=routing,
        available_at=now,
        **row,
    )


def deliver_rows(tx: Tx, rows: list[dict[str, Any]], now: float) -> None:
    """Many deliveries at once (the router's bulk path); rows carry message columns."""
    seen: set[tuple[str, str]] = set()
    instances = []
    for row in rows:
        key = (row["process"], row["instance_id"])
        if key not in seen:
            seen.add(key)
            instances.append({"process": key[0], "instance_id": key[1], "now": now})
    tx.many("ensure_instance", instances)
    tx.many("insert_inbox", rows)
