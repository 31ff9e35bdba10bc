"""Operator actions on a store: status, parked work, retry, skip and rewind.

They act on the store's own time (`Store.now`: its virtual clock's if it runs on one), so a
retry on a virtual-time store is due at once, not decades away.
"""

from __future__ import annotations

from typing import Any

from procession.errors import ProcessionError
from procession.runtime.batches import ack_item
from procession.runtime.envelope import load_meta
from procession.store.base import Store
from procession.store.work import ItemStatus, commands, consumers, instances, timers


def status(store: Store) -> dict[str, Any]:
    with store.transaction(write=False) as tx:
        failures = consumers.failures(tx)
        return {
            "backend": store.backend.name,
            "head": tx.head_position(),
            "checkpoints": dict(sorted(consumers.checkpoints(tx).items())),
            "inbox": instances.count(tx),
            "commands_pending": commands.count_pending(tx),
            "timers": timers.count(tx),
            "parked": len(instances.parked(tx))
            + len(commands.parked(tx))
            + sum(1 for f in failures.values() if f.parked),
        }


def parked(store: Store) -> list[dict[str, Any]]:
    """Every parked delivery, command and log consumer: what, where, how often tried, why."""
    with store.transaction(write=False) as tx:
        deliveries = [
            {
                "kind": "delivery",
                "id": str(d.id),
                "process": d.process,
                "instance_id": d.instance_id,
                "type": d.type,
                "attempts": d.attempts,
                "error": d.error,
            }
            for d in instances.parked(tx)
        ]
        parked_commands = [
            {
                "kind": "command",
                "id": c.command_id,
                "type": c.type,
                "attempts": c.attempts,
                "error": c.error,
            }
            for c in commands.parked(tx)
        ]
        parked_consumers = [
            {
                "kind": "projection" if f.name.startswith("projection:") else "consumer",
                "id": f.name,
                "position": f.position,
                "attempts": f.attempts,
                "error": f.error,
            }
            for f in consumers.failures(tx).values()
            if f.parked
        ]
    return deliveries + parked_commands + parked_consumers


def _is_consumer(item_id: str) -> bool:
    return item_id == "router" or item_id.startswith("projection:")


def retry(store: Store, item_id: str) -> bool:
    """Put a parked delivery, command or consumer back to work at once."""
    now = store.now()
    with store.transaction() as tx:
        if item_id.isdigit():
            return instances.retry_parked(tx, int(item_id), now)
        if _is_consumer(item_id):
            return consumers.clear_failure_now(tx, item_id) == 1
        return commands.retry_parked(tx, item_id, now)


def skip(store: Store, item_id: str) -> bool:
    """Drop parked work for good: a delivery or command is discarded (its instance goes on,
    its batch item is skipped); a consumer moves past the event it failed on."""
    now = store.now()
    with store.transaction() as tx:
        if item_id.isdigit():
            return instances.skip_parked(tx, int(item_id), now)
        if _is_consumer(item_id):
            failure = consumers.failures(tx).get(item_id)
            if failure is None or not failure.parked:
                return False
            consumers.rewind(tx, item_id, failure.position)
            return consumers.clear_failure_now(tx, item_id) == 1
        if not commands.skip_parked(tx, item_id):
            return False
        meta = load_meta(commands.metadata(tx, item_id) or "{}")
        if "batch_id" in meta:  # its batch item will never be acknowledged otherwise
            ack_item(tx, meta, ItemStatus.SKIPPED, "skipped by an operator", now)
        return True


def rewind(
    store: Store, consumer: str, to_position: int, known: frozenset[str] = frozenset()
) -> int:
    """Set a log consumer's checkpoint: it next reads the events after `to_position` (a
    projection replays them; the router re-routes them, and instances drop what they have
    already handled). Returns the position it was at. A consumer is known by its checkpoint,
    or by `known` (a runtime's consumers, which may not have read anything yet)."""
    if to_position < 0:
        raise ProcessionError(f"cannot rewind to a negative position ({to_position})")
    with store.transaction() as tx:
        tx.wait_singleton(consumer)  # no worker is feeding it meanwhile
        saved = consumers.checkpoints(tx)
        if consumer not in saved and consumer not in known:
            names = ", ".join(sorted(saved.keys() | known)) or "none yet"
            raise ProcessionError(f"no log consumer {consumer!r} (consumers: {names})")
        head = tx.head_position()
        if to_position > head:
            raise ProcessionError(f"position {to_position} is beyond the log's head ({head})")
        consumers.rewind(tx, consumer, to_position)
        consumers.clear_failure(tx, consumer)
        return saved.get(consumer, 0)
