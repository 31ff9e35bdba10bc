"""What a process step may ask for, besides sending commands.

`handle(state, message, ctx)` returns a list mixing `Command`s and these effects. The engine
commits them all with the new state in one transaction (DESIGN §4).
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

import msgspec

from procession.errors import ConfigurationError
from procession.messages import Event, Message


class RateLimit(msgspec.Struct, frozen=True):
    """At most `items` dispatched in any `per_seconds` of the runtime's clock (a sliding
    window: e.g. the re-signature requests a mail provider accepts per hour,
    `RateLimit(100, 3600)`)."""

    items: int
    per_seconds: float

    def __post_init__(self) -> None:
        if not 1 <= self.items <= 2**31 - 1 or not 0 < self.per_seconds < math.inf:
            raise ConfigurationError(
                f"a rate limit needs at least 1 item per a positive period, not "
                f"{self.items} per {self.per_seconds} s"
            )

    def __str__(self) -> str:
        return f"{self.items}/{self.per_seconds:g}s"

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """`100/hour`, `5/min`, `2/s`, `10/15min`: items per (a number of) s, min, h, day."""
        found = _RATE.fullmatch(text.strip().lower())
        if found is None:
            raise ConfigurationError(
                f"a rate looks like 100/hour, 5/min, 2/s or 10/15min, not {text!r}"
            )
        items, count, unit = found.groups()
        return cls(int(items), float(count or 1) * _UNITS[unit])


_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "min": 60.0, "minute": 60.0}
_UNITS |= {"minutes": 60.0, "h": 3600.0, "hour": 3600.0, "hours": 3600.0, "d": 86400.0}
_UNITS |= {"day": 86400.0, "days": 86400.0}
_RATE = re.compile(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(" + "|".join(_UNITS) + ")")


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
    - `rate_limit`: at most so many items dispatched per period, besides `max_in_flight`.

    An operator may pause, resume, cancel or re-throttle a running batch
    (`procession.runtime.operations`, `procession batches`).
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
    rate_limit: RateLimit | None = None


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


class BatchControlEvent(Event, frozen=True, kw_only=True):
    """An operator's change to a batch, appended to the stream `procession.batch-<id>` in the
    transaction that made it: the audit of who changed what, and why."""

    batch_id: str
    by: str
    """Who: `cli:<os user>`, an HTTP principal, ..."""
    reason: str = ""


class BatchPaused(BatchControlEvent, frozen=True, kw_only=True):
    """The batch dispatches nothing until resumed."""


class BatchResumed(BatchControlEvent, frozen=True, kw_only=True):
    pass


class BatchCancelRequested(BatchControlEvent, frozen=True, kw_only=True):
    """Undispatched items were cancelled; dispatched ones finish, then the batch completes
    as cancelled."""


class BatchThrottled(BatchControlEvent, frozen=True, kw_only=True):
    """The batch's throttle changed: the settings now in force, and those before."""

    max_in_flight: int
    rate_limit: RateLimit | None
    previous_max_in_flight: int
    previous_rate_limit: RateLimit | None


def batch_stream(batch_id: str) -> str:
    """The stream of a batch's control events."""
    return f"procession.batch-{batch_id}"


Effect = Schedule | CancelTimer | StartBatch | CancelBatch | Complete
ENGINE_MESSAGES: tuple[type[Message], ...] = (
    TimerFired,
    BatchCompleted,
    BatchPaused,
    BatchResumed,
    BatchCancelRequested,
    BatchThrottled,
)
