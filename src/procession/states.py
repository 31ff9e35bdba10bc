"""Every state a work-table row can be in, once: Python compares with these, the schema's
CHECK constraints (migration 003, constraints named `<table>_<column>`) refuse anything else.
A test checks that every state literal in the SQL files is a member of one of them."""

from __future__ import annotations

from enum import StrEnum


class CommandStatus(StrEnum):
    PENDING = "pending"
    """In the outbox, waiting to run (or to be retried)."""
    DONE = "done"
    REJECTED = "rejected"
    """The domain refused it (`CommandRejected`): an answer, not an engine failure."""
    PARKED = "parked"
    """It failed and its policy gave up: waits for an operator (retry or skip)."""
    SKIPPED = "skipped"
    """An operator dropped it."""


class InstanceStatus(StrEnum):
    NEW = "new"
    """A delivery is queued for it, no step has started it yet."""
    ACTIVE = "active"
    DONE = "done"


class BatchStatus(StrEnum):
    ENUMERATING = "enumerating"
    RUNNING = "running"
    """Every target is known; items are being dispatched and finished. A *paused* batch is
    still running (or enumerating): pausing is a flag on the row (`batches.paused`, migration
    005), not a status, since what was dispatched goes on finishing and completion follows
    as usual; only dispatching stops."""
    CANCELLING = "cancelling"
    """Undispatched items were cancelled; dispatched ones finish."""
    COMPLETED = "completed"
    CANCELLED = "cancelled"


ACTIVE_BATCH = (BatchStatus.ENUMERATING, BatchStatus.RUNNING, BatchStatus.CANCELLING)


class ItemStatus(StrEnum):
    PENDING = "pending"
    DISPATCHED = "dispatched"
    """Its command is in the outbox and has not run: what `max_in_flight` bounds."""
    AWAITING = "awaiting"
    """Its command ran; the item waits for an outcome event."""
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


OPEN_ITEM = (ItemStatus.PENDING, ItemStatus.DISPATCHED, ItemStatus.AWAITING)


class Routing(StrEnum):
    """How a delivery reaches its process instance."""

    START = "start"
    START_STRICT = "start!"
    CONTINUE = "continue"
    CONTINUE_STRICT = "continue!"
    STOP = "stop"
    TIMER = "timer"
    BATCH = "batch"
