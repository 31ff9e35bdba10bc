"""The batch machinery: enumerate, dispatch under the throttle, finish items, complete.

Progress lives in `batch_items` (one row per target) and is counted through an index, never
in the owning process's state: a million replies do not queue up behind one parent instance.
Items move pending -> dispatched (command in the outbox) -> awaiting (command executed) ->
done | failed | skipped; or pending -> cancelled. `max_in_flight` bounds *dispatched* items:
it throttles the command load, while items awaiting a days-long outcome cost nothing.

An operator controls a running batch (`procession.runtime.operations`): a *paused* batch
dispatches nothing (a flag on the row, not a status: what was dispatched finishes, and
enumeration goes on, since it only reads a read model and sends nothing); `max_in_flight`
and a *rate limit* may change at any time. The rate limit counts the items dispatched in the
last period of the runtime's clock (each item keeps its `dispatched_at`), read under the
batch row's lock in the dispatching transaction: a sliding window, durable across restarts,
never exceeded by several workers.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import msgspec

from procession.app import App
from procession.errors import ConfigurationError
from procession.ids import derived_id
from procession.policy import describe
from procession.process.batch import BatchProgress, completion_due
from procession.process.effects import BatchCompleted, RateLimit, StartBatch
from procession.runtime.envelope import load_meta, message_row, metadata
from procession.store.base import Tx, encode_json
from procession.store.work import (
    OPEN_ITEM,
    BatchRow,
    BatchStatus,
    CommandStatus,
    ItemStatus,
    Routing,
    batches,
    commands,
    instances,
)
from procession.store.work.records import BatchControl

log = logging.getLogger("procession")


def check_start(app: App, spec: StartBatch) -> StartBatch:
    """Refuse, while the step runs (so its instance parks), a batch the app cannot run; the
    spec with `await_outcome` resolved (None: as its template was registered)."""
    if spec.source not in app.sources:
        raise ConfigurationError(f"batch {spec.batch_id}: unknown target source {spec.source!r}")
    template = app.templates.get(spec.template)
    if template is None:
        raise ConfigurationError(f"batch {spec.batch_id}: unknown template {spec.template!r}")
    if spec.await_outcome is None:
        spec = msgspec.structs.replace(spec, await_outcome=template.awaits_outcome)
    if spec.await_outcome and not app.outcomes:
        raise ConfigurationError(
            f"batch {spec.batch_id} awaits outcomes, but the app declares none "
            "(App.batch_outcome): it could never complete"
        )
    return spec


def start(
    tx: Tx, owner: str, instance_id: str, spec: StartBatch, meta: dict[str, Any], now: float
) -> None:
    """Record a new batch (idempotent on batch_id); enumeration happens in the batch worker."""
    batches.insert(
        tx,
        batch_id=spec.batch_id,
        owner_process=owner,
        owner_instance=instance_id,
        source=spec.source,
        params=encode_json(spec.params),
        template=spec.template,
        fence=spec.fence,
        max_in_flight=spec.max_in_flight,
        page_size=spec.page_size,
        now=now,
        metadata=encode_json({**meta, "await_outcome": spec.await_outcome}),
    )
    if spec.rate_limit is not None:
        limit = spec.rate_limit
        batches.set_rate_at_start(
            tx, spec.batch_id, instance_id, limit.items, limit.per_seconds, now
        )
    if spec.supersedes:
        cancel(tx, spec.supersedes, now, superseded_by=spec.batch_id)


def cancel(tx: Tx, batch_id: str, now: float, superseded_by: str | None = None) -> None:
    """Cancel items not yet dispatched; dispatched ones finish; completion follows."""
    batches.cancel(tx, batch_id, now, superseded_by)


def rate_limit_of(control: BatchControl) -> RateLimit | None:
    if control.rate_items is None or control.rate_per_seconds is None:
        return None
    return RateLimit(control.rate_items, control.rate_per_seconds)


def window_end(first: float, per_seconds: float) -> float:
    """When an item dispatched at `first` leaves the window: the first instant `now` at
    which `first > now - per_seconds` no longer holds, in floating point too (else a clock
    moved to `first + per_seconds` could find the window still full, and wait forever)."""
    due = first + per_seconds
    while due - per_seconds < first:
        due = math.nextafter(due, math.inf)
    return due


def capacity(tx: Tx, control: BatchControl, now: float) -> int:
    """How many items the batch may dispatch now: under `max_in_flight` and its rate limit."""
    room = control.max_in_flight - batches.dispatched_count(tx, control.batch_id)
    limit = rate_limit_of(control)
    if limit is not None and room > 0:
        recent = batches.dispatched_since(tx, control.batch_id, now - limit.per_seconds)
        room = min(room, limit.items - recent)
    return room


def ack_item(
    tx: Tx,
    meta: dict[str, Any],
    outcome: ItemStatus | None,
    detail: str | None,
    now: float,
    events: int = 0,
) -> None:
    """A batch command was executed (outcome None) or rejected (failed / skipped). An item
    that awaits its outcome remembers where the log stood before its command ran (`events`:
    how many its command appended, the last of the transaction's): an outcome written by
    the command itself, or after it, is its own."""
    if outcome is None and meta.get("batch_await"):
        after = tx.log_position() - events
        batches.await_item(tx, meta["batch_id"], meta["batch_target"], after, now)
        return
    if outcome is None:
        outcome = ItemStatus.DONE
    batches.move_item(
        tx, meta["batch_id"], meta["batch_target"], outcome, ItemStatus.DISPATCHED, detail, now
    )


class Batch(msgspec.Struct):
    """An active batch as the worker steps it (its row, params and metadata decoded)."""

    row: BatchRow
    params: dict[str, Any]
    metadata: dict[str, Any]

    @classmethod
    def of(cls, row: BatchRow) -> Batch:
        return cls(row, msgspec.json.decode(row.params), load_meta(row.metadata))


class BatchWorker:
    """Enumerates, dispatches and completes batches. A batch that fails is logged and left
    for the next round; it stops no other batch and no other stage."""

    def __init__(self, app: App) -> None:
        self.app = app

    def run(self, tx: Tx, now: float) -> int:
        work = 0
        for batch_id in batches.active_ids(tx):
            try:
                with tx.savepoint():
                    locked = batches.lock(tx, batch_id)
                    if locked is not None:  # else another worker has it, or it finished
                        work += self.step(tx, Batch.of(locked), now)
            except Exception as exc:
                log.error("batch %s failed this round: %s", batch_id, describe(exc))
        return work

    def step(self, tx: Tx, batch: Batch, now: float) -> int:
        """Enumerate a page, dispatch up to the throttle, complete when nothing is open."""
        work = 0
        if batch.row.status == BatchStatus.ENUMERATING:
            work += self.enumerate(tx, batch, now)
        control = batches.control(tx, batch.row.batch_id)
        if control is None:
            return work
        if batch.row.status != BatchStatus.CANCELLING and not control.paused:
            work += self.dispatch(tx, batch, now, control)
        open_items = int(batches.has_open_items(tx, batch.row.batch_id))
        if completion_due(batch.row.status, open_items):
            self.complete(tx, batch, now)
            work += 1
        return work

    def enumerate(self, tx: Tx, batch: Batch, now: float) -> int:
        row = batch.row
        source = self.app.sources.get(row.source)
        if source is None:
            raise ConfigurationError(f"batch {row.batch_id}: unknown target source {row.source!r}")
        if tx.checkpoint(f"projection:{source.projection}") < row.fence:
            return 0  # the read model has not reached the fence yet
        targets = source.page(tx.session, batch.params, row.fence, row.cursor, row.page_size)
        batches.add_items(tx, row.batch_id, targets, now)
        if len(targets) < row.page_size:
            row.status = BatchStatus.RUNNING
        if targets:
            row.cursor = targets[-1]
        row.total += len(targets)
        batches.advance_cursor(tx, row.batch_id, row.cursor, len(targets), BatchStatus(row.status))
        return len(targets) or 1

    def dispatch(
        self, tx: Tx, batch: Batch, now: float, control: BatchControl | None = None
    ) -> int:
        row = batch.row
        control = control or batches.control(tx, row.batch_id)
        room = 0 if control is None else capacity(tx, control, now)
        if room <= 0:
            return 0
        targets = batches.pending_targets(tx, row.batch_id, room)
        if not targets:
            return 0
        template = self.app.templates.get(row.template)
        if template is None:
            raise ConfigurationError(f"batch {row.batch_id}: unknown template {row.template!r}")
        cause = batch.metadata.get("message_id")
        awaits = bool(batch.metadata.get("await_outcome", True))
        for target in targets:
            command_id = derived_id("batch", row.batch_id, target)
            command = msgspec.structs.replace(
                template.build(target, batch.params), command_id=command_id
            )
            meta = metadata(
                command_id,
                row.batch_id,
                cause,
                now,
                batch_id=row.batch_id,
                batch_target=target,
                batch_await=awaits,
            )
            commands.record(
                tx,
                command_id,
                CommandStatus.PENDING,
                now,
                message_row(tx.registry, command, meta),
            )
        batches.dispatch_items(tx, row.batch_id, targets, now)
        return len(targets)

    def complete(self, tx: Tx, batch: Batch, now: float) -> None:
        row = batch.row
        counts = batches.counts(tx, row.batch_id)
        status = (
            BatchStatus.COMPLETED if row.status == BatchStatus.RUNNING else BatchStatus.CANCELLED
        )
        if not batches.finish(tx, row.batch_id, status, now):
            return  # already completed: the owner is told once
        message = BatchCompleted(
            batch_id=row.batch_id,
            status=status,
            total=row.total,
            done=counts.get(ItemStatus.DONE, 0),
            failed=counts.get(ItemStatus.FAILED, 0),
            skipped=counts.get(ItemStatus.SKIPPED, 0),
            cancelled=counts.get(ItemStatus.CANCELLED, 0),
        )
        message_id = derived_id("batch-completed", row.batch_id)
        meta = metadata(message_id, row.batch_id, batch.metadata.get("message_id"), now)
        delivery = instances.delivery_row(
            row.owner_process,
            row.owner_instance,
            Routing.BATCH,
            message_row(tx.registry, message, meta),
        )
        instances.deliver(tx, [delivery], now)


def has_work(tx: Tx) -> bool:
    """Some batch has targets to enumerate, items to dispatch (now or, under a rate limit,
    later), or a completion due. A paused batch's pending items wait for an operator: they
    are not work, as parked commands are not."""
    for row in batches.active(tx):
        if row.status == BatchStatus.ENUMERATING:
            return True
        control = batches.control(tx, row.batch_id)
        paused = control is None or bool(control.paused)
        if not paused and batches.pending_targets(tx, row.batch_id, 1):
            return True
        if completion_due(row.status, int(batches.has_open_items(tx, row.batch_id))):
            return True
    return False


def next_due(tx: Tx, now: float) -> float | None:
    """The earliest time a batch held back by its rate limit (window full, items pending,
    not paused) may dispatch again. A runtime on a virtual clock moves the clock to it as to
    a timer."""
    dues = []
    for row in batches.active(tx):
        control = batches.control(tx, row.batch_id)
        limit = None if control is None or control.paused else rate_limit_of(control)
        if limit is None or row.status == BatchStatus.CANCELLING:
            continue
        since = now - limit.per_seconds
        if batches.dispatched_since(tx, row.batch_id, since) < limit.items:
            continue
        first = batches.first_dispatched_since(tx, row.batch_id, since)
        if first is not None and batches.pending_targets(tx, row.batch_id, 1):
            dues.append(window_end(first, limit.per_seconds))
    return min(dues) if dues else None


def progress(tx: Tx, batch_id: str) -> BatchProgress | None:
    row = batches.get(tx, batch_id)
    if row is None:
        return None
    counts = batches.counts(tx, batch_id)
    control = batches.control(tx, batch_id)
    finished = sum(
        counts.get(s, 0) for s in (ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.SKIPPED)
    )
    last = batches.last_finished_at(tx, batch_id)
    elapsed = (last - row.created_at) if last is not None else 0.0
    rate = finished / elapsed if elapsed > 0 else 0.0
    open_items = sum(counts.get(s, 0) for s in OPEN_ITEM)
    done_statuses = (BatchStatus.COMPLETED, BatchStatus.CANCELLED)
    eta = open_items / rate if rate > 0 and row.status not in done_statuses else None
    dispatched = counts.get(ItemStatus.DISPATCHED, 0)
    awaiting = counts.get(ItemStatus.AWAITING, 0)
    return BatchProgress(
        batch_id=batch_id,
        status=row.status,
        enumerated=row.status != BatchStatus.ENUMERATING,
        total=row.total,
        pending=counts.get(ItemStatus.PENDING, 0),
        in_flight=dispatched + awaiting,
        done=counts.get(ItemStatus.DONE, 0),
        failed=counts.get(ItemStatus.FAILED, 0),
        skipped=counts.get(ItemStatus.SKIPPED, 0),
        cancelled=counts.get(ItemStatus.CANCELLED, 0),
        rate=rate,
        eta_seconds=eta,
        superseded_by=row.superseded_by,
        owner_process=row.owner_process,
        owner_instance=row.owner_instance,
        dispatched=dispatched,
        awaiting=awaiting,
        paused=control is not None and bool(control.paused),
        max_in_flight=row.max_in_flight if control is None else control.max_in_flight,
        rate_limit=None if control is None else rate_limit_of(control),
    )
