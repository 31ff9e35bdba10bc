"""Operator actions on a store: status, parked messages, retry and skip."""

from __future__ import annotations

from typing import Any

from procession.process import batch
from procession.runtime.envelope import load_meta
from procession.store.base import Store


def status(store: Store) -> dict[str, Any]:
    with store.transaction(write=False) as tx:
        rows = tx.sql("SELECT name, position FROM checkpoints ORDER BY name")
        checkpoints: dict[str, int] = dict(rows)
        return {
            "backend": store.backend.name,
            "head": tx.head_position(),
            "checkpoints": checkpoints,
            "inbox": tx.sql("SELECT COUNT(*) FROM inbox")[0][0],
            "commands_pending": tx.sql("SELECT COUNT(*) FROM commands WHERE status = 'pending'")[0][
                0
            ],
            "timers": tx.sql("SELECT COUNT(*) FROM timers")[0][0],
            "parked": len(tx.rows("parked_inbox")) + len(tx.rows("parked_commands")),
        }


def parked(store: Store) -> list[dict[str, Any]]:
    """Every parked delivery and command: what, where, how often tried, and why it failed."""
    with store.transaction(write=False) as tx:
        deliveries = [
            {
                "kind": "delivery",
                "id": str(r[0]),
                "process": r[1],
                "instance_id": r[2],
                "type": r[3],
                "attempts": r[6],
                "error": r[7],
            }
            for r in tx.rows("parked_inbox")
        ]
        commands = [
            {"kind": "command", "id": r[0], "type": r[1], "attempts": r[4], "error": r[5]}
            for r in tx.rows("parked_commands")
        ]
    return deliveries + commands


def retry(store: Store, item_id: str) -> bool:
    now = store.now()
    with store.transaction() as tx:
        if item_id.isdigit():
            row = tx.sql(
                "SELECT process, instance_id FROM inbox WHERE id = :id AND parked = 1",
                {"id": int(item_id)},
            )
            if not row or not tx.run("unpark_inbox", id=int(item_id), now=now):
                return False
            tx.run("resume_instance", process=row[0][0], instance_id=row[0][1], now=now)
            tx.run("unblock_instance", process=row[0][0], instance_id=row[0][1])
            return True
        return tx.run("unpark_command", command_id=item_id, now=now) == 1


def skip(store: Store, item_id: str) -> bool:
    now = store.now()
    with store.transaction() as tx:
        if item_id.isdigit():
            row = tx.sql(
                "SELECT process, instance_id FROM inbox WHERE id = :id AND parked = 1",
                {"id": int(item_id)},
            )
            if not row or not tx.run("skip_inbox", id=int(item_id)):
                return False
            tx.run("resume_instance", process=row[0][0], instance_id=row[0][1], now=now)
            tx.run("unblock_instance", process=row[0][0], instance_id=row[0][1])
            return True
        if tx.run("skip_command", command_id=item_id) != 1:
            return False
        meta = load_meta(tx.scalar("command_metadata", command_id=item_id))
        if "batch_id" in meta:  # its batch item will never be acknowledged otherwise
            batch.ack_item(tx, meta, "skipped", "skipped by an operator", now)
        return True
