"""Projections: read models in the same database, exactly once.

A projection's rows and its checkpoint are written in one transaction, so a crash between
any two statements either keeps both or neither: replaying from the checkpoint never applies
an event twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from procession.messages import Message
from procession.policy import DEFAULT_POLICY, Decision, Failure, RetryPolicy
from procession.session import Session

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class EventInfo:
    """Where an event sits in the log, for handlers that need it (e.g. to honour a fence)."""

    position: int
    stream_id: str
    version: int
    metadata: dict[str, Any]


Handler = Callable[[Session, Any, EventInfo], None]


class Projection:
    """Subclass, give it a `name`, register handlers with `self.on(EventType, fn)`.

    `setup(session)` creates its tables (idempotently); `reset(session)` empties them for a
    rebuild. Handlers write with `session.write("INSERT ... :param", {...})` (or run a
    statement now with `session.sql`), portable across backends.

    A handler that raises stops this projection alone, at that event: `on_error` (by default
    `retry_policy`) retries it, then parks it; the router and the other projections go on.
    """

    name: str = ""
    retry_policy: RetryPolicy = DEFAULT_POLICY

    def __init__(self) -> None:
        self.handlers: dict[type[Message], Handler] = {}

    def on(self, event_type: type[M], handler: Callable[[Session, M, EventInfo], None]) -> None:
        self.handlers[event_type] = handler

    def setup(self, session: Session) -> None:
        """Create tables if missing."""

    def reset(self, session: Session) -> None:
        """Delete every row, before a rebuild."""

    def handle(self, session: Session, event: Message, info: EventInfo) -> None:
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(session, event, info)

    def on_error(self, failure: Failure) -> Decision:
        """What to do when a handler raises: by default `retry_policy` decides."""
        return self.retry_policy.decide(failure)
