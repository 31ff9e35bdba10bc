"""What a process step may ask for, besides sending commands.

`handle(state, message, ctx)` returns a list mixing `Command`s and these effects. The engine
commits them all with the new state in one transaction (DESIGN §4).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec

from procession.messages import Event, Message


class Schedule(msgspec.Struct, frozen=True):
    """Set (or reset) the timer `name` of this instance.

    `after` counts from the time of the message being handled, not from when a worker
    happens to run the step: process time is message time, so outcomes do not depend on
    scheduling. `message` is delivered to the instance when the timer fires (default:
    `TimerFired(name)`).
    """

    name: str
    after: timedelta | None = None
    at: float | None = None
    message: Message | None = None


class CancelTimer(msgspec.Struct, frozen=True):
    name: str


class StartBatch(msgspec.Struct, frozen=True):
    """Fan a command template out over the targets a source yields behind a position fence.

    - `source`: a registered target source (`App.target_source`), given `params` and the
      fence; it must return only targets that existed at the fence.
    - `template`: a registered template building one command per target.
    - `fence`: the log position the source's projection must have reached (usually the
      position of the event that triggered the batch).
    - `max_in_flight`: commands dispatched and not yet executed, at most.
    - `await_outcome`: an item finishes on a correlated outcome event
      (`App.batch_outcome`); otherwise when its command succeeds. None (the default): as
      the template was registered (`App.batch_template(..., awaits_outcome=...)`).
    - `supersedes`: a batch this one replaces: its not-yet-dispatched items are cancelled.
    """

    batch_id: str
    source: str
    template: str
    fence: int
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    max_in_flight: int = 1000
    page_size: int = 1000
    await_outcome: bool | None = None
    supersedes: str | None = None


class CancelBatch(msgspec.Struct, frozen=True):
    batch_id: str


class Complete(msgspec.Struct, frozen=True):
    """End this instance: its timers are cancelled and later messages are not routed to it."""


class TimerFired(Event, frozen=True, kw_only=True):
    """Delivered when a timer set without a message of its own fires."""

    name: str


class BatchCompleted(Event, frozen=True, kw_only=True):
    """Delivered once to the process that started a batch, when every item has finished."""

    batch_id: str
    status: str
    total: int
    done: int
    failed: int
    skipped: int
    cancelled: int


Effect = Schedule | CancelTimer | StartBatch | CancelBatch | Complete
ENGINE_MESSAGES: tuple[type[Message], ...] = (TimerFired, BatchCompleted)
