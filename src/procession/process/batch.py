"""Batches: one command template fanned out over up to millions of targets (DESIGN §6).

Progress lives in `batch_items` (one row per target) and is counted through an index, never
in the owning process's state: a million replies do not queue up behind one parent instance.
Items move pending -> dispatched (command in the outbox) -> awaiting (command executed) ->
done | failed | skipped; or pending -> cancelled. `max_in_flight` bounds *dispatched* items:
it throttles the command load, while items awaiting a days-long outcome cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from procession.app import App
from procession.errors import ConfigurationError
from procession.ids import derived_id
from procession.process.effects import BatchCompleted, StartBatch
from procession.process.inbox import deliver
from procession.runtime.envelope import load_meta, metadata
from procession.store.base import Tx, encode_json

OPEN = ("pending", "dispatched", "awaiting")
FINISHED = ("done", "failed", "skipped", "cancelled")


class BatchProgress(msgspec.Struct, frozen=True):
    batch_id: str
    status: str
    enumerated: bool
    total: int
    pending: int
    in_flight: int
    done: int
    failed: int
    skipped: int
    cancelled: int
    rate: float
    """Finished items per second of (process) time since the batch started."""
    eta_seconds: float | None
    superseded_by: str | None = None
    owner_process: str = ""
    owner_instance: str = ""
    """The process instance that started the batch (and receives its BatchCompleted)."""


def start(
    tx: Tx, owner: str, instance_id: str, spec: StartBatch, meta: dict[str, Any], now: float
) -> None:
    """Record a new batch (idempotent on batch_id); enumeration happens in the batch worker."""
    tx.defer(
        "insert_batch",
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
    if spec.supersedes:
        cancel(tx, spec.supersedes, now, superseded_by=spec.batch_id)


def cancel(tx: Tx, batch_id: str, now: float, superseded_by: str | None = None) -> None:
    """Cancel items not yet dispatched; dispatched ones finish; completion follows."""
    tx.defer("cancel_pending_items", batch_id=batch_id, now=now)
    tx.defer(
        "set_batch_status", batch_id=batch_id, status="cancelling", superseded_by=superseded_by
    )


def ack_item(
    tx: Tx, meta: dict[str, Any], outcome: str | None, detail: str | None, now: float
) -> None:
    """A batch command was executed (outcome None) or rejected (failed / skipped)."""
    if outcome is None:
        outcome = "awaiting" if meta.get("batch_await") else "done"
    tx.defer_any(
        "set_item_status",
        batch_id=meta["batch_id"],
        target_id=meta["batch_target"],
        status=outcome,
        detail=detail,
        now=now,
        from_status="dispatched",
    )


def finish_target(tx: Tx, target_id: str, outcome: str, detail: str | None, now: float) -> None:
    """An outcome event: every item of the target whose command has run finishes."""
    tx.defer("finish_open_items", target_id=target_id, status=outcome, detail=detail, now=now)


def completion_due(status: str, open_items: int) -> bool:
    """A batch completes when enumeration has ended and *every* item has finished.

    `open_items` counts items pending, dispatched or awaiting an outcome; one is enough to
    keep the batch open. A batch still enumerating may have targets not yet seen.
    """
    return status in ("running", "cancelling") and open_items == 0


@dataclass
class Batch:
    batch_id: str
    owner_process: str
    owner_instance: str
    source: str
    params: dict[str, Any]
    template: str
    fence: int
    max_in_flight: int
    page_size: int
    cursor: str | None
    status: str
    total: int
    created_at: float
    metadata: dict[str, Any]

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Batch:
        values = list(row[:14])
        values[4] = msgspec.json.decode(values[4])
        values[13] = load_meta(values[13])
        return cls(*values)


class BatchWorker:
    """Enumerates, dispatches and completes batches, one short transaction per batch."""

    def __init__(self, app: App) -> None:
        self.app = app

    def run(self, tx: Tx, now: float) -> int:
        work = 0
        for (batch_id,) in tx.rows("active_batch_ids"):
            locked = tx.row("lock_batch", batch_id=batch_id)
            if locked is None:
                continue  # another worker has it, or it finished meanwhile
            work += self.step(tx, Batch.from_row(locked), now)
        return work

    def step(self, tx: Tx, batch: Batch, now: float) -> int:
        """Enumerate a page, dispatch up to the throttle, complete when nothing is open."""
        work = 0
        if batch.status == "enumerating":
            work += self.enumerate(tx, batch, now)
        if batch.status != "cancelling":
            work += self.dispatch(tx, batch, now)
        if completion_due(
            batch.status, open_items=len(tx.rows("batch_has_open_items", batch_id=batch.batch_id))
        ):
            self.complete(tx, batch, now)
            work += 1
        return work

    def enumerate(self, tx: Tx, batch: Batch, now: float) -> int:
        source = self.app.sources.get(batch.source)
        if source is None:
            raise ConfigurationError(
                f"batch {batch.batch_id}: unknown target source {batch.source!r}"
            )
        if tx.checkpoint(f"projection:{source.projection}") < batch.fence:
            return 0  # the read model has not reached the fence yet
        targets = source.page(tx, batch.params, batch.fence, batch.cursor, batch.page_size)
        tx.many(
            "insert_batch_item",
            [{"batch_id": batch.batch_id, "target_id": t, "now": now} for t in targets],
        )
        if len(targets) < batch.page_size:
            batch.status = "running"
        if targets:
            batch.cursor = targets[-1]
        batch.total += len(targets)
        tx.defer(
            "advance_batch_cursor",
            batch_id=batch.batch_id,
            cursor=batch.cursor,
            added=len(targets),
            status=batch.status,
        )
        return len(targets) or 1

    def dispatch(self, tx: Tx, batch: Batch, now: float) -> int:
        capacity = batch.max_in_flight - int(tx.scalar("count_in_flight", batch_id=batch.batch_id))
        if capacity <= 0:
            return 0
        targets = [r[0] for r in tx.rows("pending_items", batch_id=batch.batch_id, limit=capacity)]
        if not targets:
            return 0
        template = self.app.templates.get(batch.template)
        if template is None:
            raise ConfigurationError(f"batch {batch.batch_id}: unknown template {batch.template!r}")
        from procession.runtime.commands import enqueue

        cause = batch.metadata.get("message_id")
        for target in targets:
            command = template(target, batch.params)
            command_id = derived_id("batch", batch.batch_id, target)
            command = msgspec.structs.replace(command, command_id=command_id)
            meta = metadata(
                command_id,
                batch.batch_id,
                cause,
                now,
                batch_id=batch.batch_id,
                batch_target=target,
                batch_await=bool(batch.metadata.get("await_outcome", True)),
            )
            enqueue(tx, command, meta, now)
        tx.many(
            "set_item_status",
            [
                {
                    "batch_id": batch.batch_id,
                    "target_id": t,
                    "status": "dispatched",
                    "detail": None,
                    "now": now,
                    "from_status": "pending",
                }
                for t in targets
            ],
        )
        return len(targets)

    def complete(self, tx: Tx, batch: Batch, now: float) -> None:
        counts: dict[str, int] = dict(tx.rows("batch_counts", batch_id=batch.batch_id))
        status = "completed" if batch.status == "running" else "cancelled"
        finished = tx.run(
            "finish_batch",
            batch_id=batch.batch_id,
            status=status,
            now=now,
        )
        if finished != 1:
            return  # already completed: the owner is told once
        message = BatchCompleted(
            batch_id=batch.batch_id,
            status=status,
            total=batch.total,
            done=counts.get("done", 0),
            failed=counts.get("failed", 0),
            skipped=counts.get("skipped", 0),
            cancelled=counts.get("cancelled", 0),
        )
        message_id = derived_id("batch-completed", batch.batch_id)
        meta = metadata(message_id, batch.batch_id, batch.metadata.get("message_id"), now)
        deliver(tx, batch.owner_process, batch.owner_instance, "batch", message, meta, now)


def has_work(tx: Tx) -> bool:
    """Some batch has targets to enumerate, items to dispatch, or a completion due."""
    for row in tx.rows("active_batches"):
        batch_id, status = row[0], row[10]
        if status == "enumerating" or tx.row("pending_items", batch_id=batch_id, limit=1):
            return True
        if completion_due(status, len(tx.rows("batch_has_open_items", batch_id=batch_id))):
            return True
    return False


def progress(tx: Tx, batch_id: str) -> BatchProgress | None:
    row = tx.row("get_batch", batch_id=batch_id)
    if row is None:
        return None
    counts = {status: int(n) for status, n in tx.rows("batch_counts", batch_id=batch_id)}
    status, total, created_at = row[10], int(row[11]), float(row[12])
    first_last = tx.row("batch_last_update", batch_id=batch_id)
    finished = sum(counts.get(s, 0) for s in ("done", "failed", "skipped"))
    last = first_last[1] if first_last and first_last[1] is not None else None
    elapsed = (float(last) - created_at) if last is not None else 0.0
    rate = finished / elapsed if elapsed > 0 else 0.0
    open_items = sum(counts.get(s, 0) for s in OPEN)
    eta = open_items / rate if rate > 0 and status not in ("completed", "cancelled") else None
    return BatchProgress(
        batch_id=batch_id,
        status=status,
        enumerated=status != "enumerating",
        total=total,
        pending=counts.get("pending", 0),
        in_flight=counts.get("dispatched", 0) + counts.get("awaiting", 0),
        done=counts.get("done", 0),
        failed=counts.get("failed", 0),
        skipped=counts.get("skipped", 0),
        cancelled=counts.get("cancelled", 0),
        rate=rate,
        eta_seconds=eta,
        superseded_by=row[15],
        owner_process=row[1],
        owner_instance=row[2],
    )
