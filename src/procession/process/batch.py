"""Batches as a user declares and watches them: target sources, templates, progress.

A batch fans one command template out over the targets a *target source* yields behind a
position fence (DESIGN §6). The engine's machinery (enumeration, throttle, outcomes,
completion) lives in `procession.runtime.batches`; this module holds only the contracts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from procession.messages import Command
from procession.process.effects import RateLimit
from procession.session import Session
from procession.states import BatchStatus

BatchTemplate = Callable[[str, dict[str, Any]], Command]
"""Builds the command for one target: `template(target_id, params) -> Command`."""


class TargetSource(Protocol):
    """A page of target ids, ascending, strictly after `after`, that existed at `fence`.

    It reads a read model through the session (never all targets at once: memory stays
    flat), and must leave out targets born after the fence."""

    def __call__(
        self, session: Session, params: dict[str, Any], fence: int, after: str | None, limit: int
    ) -> list[str]: ...


class BatchProgress(msgspec.Struct, frozen=True):
    batch_id: str
    status: str
    enumerated: bool
    total: int
    pending: int
    in_flight: int
    """dispatched + awaiting (kept for compatibility)."""
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
    dispatched: int = 0
    """Commands in the outbox, not yet run: what `max_in_flight` bounds."""
    awaiting: int = 0
    """Commands run, items waiting for their outcome event."""
    paused: bool = False
    """An operator paused it: it dispatches nothing until resumed. A flag, not a status: a
    paused batch is still `running` (or `enumerating`: enumeration goes on while paused,
    it sends nothing), its dispatched items finish, and it completes if none is left."""
    max_in_flight: int = 0
    """The throttle now in force (an operator may have changed the one it started with)."""
    rate_limit: RateLimit | None = None
    """The rate limit now in force, if any."""


def completion_due(status: str, open_items: int) -> bool:
    """A batch completes when enumeration has ended and *every* item has finished.

    `open_items` counts items pending, dispatched or awaiting an outcome; one is enough to
    keep the batch open. A batch still enumerating may have targets not yet seen.
    """
    return status in (BatchStatus.RUNNING, BatchStatus.CANCELLING) and open_items == 0
