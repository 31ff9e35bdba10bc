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
from procession.store.base import Tx

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class EventInfo:
    """Where an event sits in the log, for handlers that need it (e.g. to honour a fence)."""

    position: int
    stream_id: str
    version: int
    metadata: dict[str, Any]


Handler = Callable[[Tx, Any, EventInfo], None]


class Projection:
    """Subclass, give it a `name`, register handlers with `self.on(EventType, fn)`.

    `setup(tx)` creates its tables (idempotently); `reset(tx)` empties them for a rebuild.
    Handlers write with `tx.sql("INSERT ... :param", {...})`, portable across backends.
    """

    name: str = ""

    def __init__(self) -> None:
        self.handlers: dict[type[Message], Handler] = {}

    def on(self, event_type: type[M], handler: Callable[[Tx, M, EventInfo], None]) -> None:
        self.handlers[event_type] = handler

    def setup(self, tx: Tx) -> None:
        """Create tables if missing."""

    def reset(self, tx: Tx) -> None:
        """Delete every row, before a rebuild."""

    def handle(self, tx: Tx, event: Message, info: EventInfo) -> None:
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(tx, event, info)
