"""Operator actions on a store: status, parked work, retry, skip and rewind; and the
control of running batches: pause, resume, cancel, throttle.

They act on the store's own time (`Store.now`: its virtual clock's if it runs on one), so a
retry on a virtual-time store is due at once, not decades away.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from procession.errors import NotFound, ProcessionError
from procession.messages import Event, MessageRegistry
from procession.process.batch import BatchProgress
from procession.process.effects import (
    ENGINE_MESSAGES,
    BatchCancelRequested,
    BatchPaused,
    BatchResumed,
    BatchThrottled,
    RateLimit,
    batch_stream,
)
from procession.runtime import liveness
from procession.runtime.batches import ack_item, cancel, progress, rate_limit_of
from procession.runtime.envelope import load_meta
from procession.store.base import Store, Tx
from procession.store.work import (
    BatchStatus,
    ItemStatus,
    commands,
    consumers,
    instances,
    timers,
)
from procession.store.work import batches as work_batches
from procession.store.work.records import BatchControl


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
        } | {"workers": liveness.listing(store)}


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


# -- batch control ----------------------------------------------------------------------------
#
# Each change locks the batch row (on PostgreSQL it waits for a worker stepping the batch) and
# appends one event to the stream `procession.batch-<id>` in the same transaction: the log is
# the audit of who changed what. A change that changes nothing records nothing.


class BatchNotFound(NotFound):
    """No batch has this id."""


class BatchRefused(ProcessionError):
    """The batch is in a state the operation does not apply to (e.g. resuming a completed
    batch)."""


_ENGINE = MessageRegistry()
_ENGINE.register_all(*ENGINE_MESSAGES)  # any store can record control events, app or not
_FINISHED = (BatchStatus.COMPLETED, BatchStatus.CANCELLED)


def batch_progress(store: Store, batch_id: str) -> BatchProgress:
    with store.transaction(write=False) as tx:
        found = progress(tx, batch_id)
    if found is None:
        raise BatchNotFound(f"no batch {batch_id!r}")
    return found


def list_batches(store: Store, limit: int = 100, after: str | None = None) -> list[BatchProgress]:
    """The newest batches first, with their progress; `after` a batch id, the page after
    it (the last id of a page is the cursor of the next)."""
    with store.transaction(write=False) as tx:
        found = [progress(tx, b) for b in work_batches.newest_ids(tx, limit, after)]
    return [p for p in found if p is not None]


@contextmanager
def _controlling(store: Store, batch_id: str, by: str) -> Iterator[tuple[Tx, BatchControl]]:
    if not by.strip():
        raise ProcessionError("say who makes the change (by=, e.g. 'cli:<user>')")
    with store.using(registry=_ENGINE).transaction() as tx:
        control = work_batches.lock_control(tx, batch_id)
        if control is None:
            raise BatchNotFound(f"no batch {batch_id!r}")
        yield tx, control


def _refuse_finished(control: BatchControl, action: str) -> None:
    if control.status in _FINISHED:
        raise BatchRefused(f"batch {control.batch_id} is {control.status}: cannot {action} it")


def _record(tx: Tx, batch_id: str, event: Event) -> BatchProgress:
    tx.append(batch_stream(batch_id), [event])
    return _progress(tx, batch_id)


def _progress(tx: Tx, batch_id: str) -> BatchProgress:
    found = progress(tx, batch_id)
    assert found is not None  # the row is locked
    return found


def pause_batch(store: Store, batch_id: str, *, by: str, reason: str = "") -> BatchProgress:
    """Stop dispatching: items dispatched or awaiting an outcome finish as usual, and
    enumeration goes on (it reads a read model and sends nothing). Pausing a paused batch
    changes and records nothing."""
    with _controlling(store, batch_id, by) as (tx, control):
        _refuse_finished(control, "pause")
        if control.status == BatchStatus.CANCELLING:
            raise BatchRefused(f"batch {batch_id} is cancelling: it dispatches nothing more")
        if control.paused:
            return _progress(tx, batch_id)
        work_batches.set_paused(tx, batch_id, True)
        return _record(tx, batch_id, BatchPaused(batch_id=batch_id, by=by, reason=reason))


def resume_batch(store: Store, batch_id: str, *, by: str, reason: str = "") -> BatchProgress:
    """Dispatch again, from where it stopped. Resuming a batch not paused records nothing."""
    with _controlling(store, batch_id, by) as (tx, control):
        _refuse_finished(control, "resume")
        if not control.paused:
            return _progress(tx, batch_id)
        work_batches.set_paused(tx, batch_id, False)
        return _record(tx, batch_id, BatchResumed(batch_id=batch_id, by=by, reason=reason))


def cancel_batch(store: Store, batch_id: str, *, by: str, reason: str = "") -> BatchProgress:
    """Cancel the items not dispatched yet; the batch completes as `cancelled` once every
    item is final, and its starting process gets one `BatchCompleted(status="cancelled")`,
    as with the `CancelBatch` effect (the same machinery).

    Items already dispatched or awaiting an outcome are left to finish: their commands are in
    the outbox or have run, and what they started (a long-running process, a letter on its
    way) belongs to the domain. Stopping it is a domain decision, made with the domain's own
    command (e.g. withdrawing a contract change), not something the engine can undo. Cancelling
    a cancelling or cancelled batch records nothing; a completed one is refused."""
    with _controlling(store, batch_id, by) as (tx, control):
        if control.status == BatchStatus.COMPLETED:
            raise BatchRefused(f"batch {batch_id} is completed: nothing left to cancel")
        if control.status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
            return _progress(tx, batch_id)
        cancel(tx, batch_id, store.now())
        return _record(tx, batch_id, BatchCancelRequested(batch_id=batch_id, by=by, reason=reason))


def throttle_batch(
    store: Store,
    batch_id: str,
    *,
    max_in_flight: int | None = None,
    rate_limit: RateLimit | None = None,
    unlimited: bool = False,
    by: str,
    reason: str = "",
) -> BatchProgress:
    """Change how fast a batch dispatches, from its next round: `max_in_flight` (commands
    dispatched and not yet run, at most) and/or `rate_limit` (None: unchanged;
    `unlimited=True` removes it). Lowering `max_in_flight` below what is dispatched only holds
    back further dispatches. A change to the settings in force records nothing."""
    if max_in_flight is None and rate_limit is None and not unlimited:
        raise ProcessionError("throttle: give max_in_flight, rate_limit or unlimited=True")
    if rate_limit is not None and unlimited:
        raise ProcessionError("throttle: give a rate_limit or unlimited=True, not both")
    if max_in_flight is not None and not 1 <= max_in_flight <= 2**31 - 1:
        raise ProcessionError(f"max_in_flight must be at least 1, not {max_in_flight}")
    with _controlling(store, batch_id, by) as (tx, control):
        _refuse_finished(control, "throttle")
        before = rate_limit_of(control)
        limit = None if unlimited else rate_limit or before
        most = control.max_in_flight if max_in_flight is None else max_in_flight
        if (most, limit) == (control.max_in_flight, before):
            return _progress(tx, batch_id)
        items, per = (None, None) if limit is None else (limit.items, limit.per_seconds)
        work_batches.set_throttle(tx, batch_id, most, items, per)
        event = BatchThrottled(
            batch_id=batch_id,
            by=by,
            reason=reason,
            max_in_flight=most,
            rate_limit=limit,
            previous_max_in_flight=control.max_in_flight,
            previous_rate_limit=before,
        )
        return _record(tx, batch_id, event)
