"""The process-manager contract (after Commanded's `interested?`, `handle`, `apply`).

A process declares, per message, whether it starts, continues or stops an instance (one id
or a list: a list is fan-out), or is not interested. `handle` decides what to do from the
state *before* the message; `evolve` folds the message into the state. Both are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar

from procession.messages import Command, Message
from procession.process.effects import Effect

S = TypeVar("S")
Kind = Literal["start", "start!", "continue", "continue!", "stop"]


@dataclass(frozen=True)
class Route:
    """Where a message goes: `kind` for each of `ids`.

    `start!` and `continue!` are strict: `start!` fails if the instance is already running,
    `continue!` if it is not. The lenient forms start-or-continue and ignore-if-absent.
    """

    kind: Kind
    ids: tuple[str, ...]


def start(*ids: str, strict: bool = False) -> Route:
    return Route("start!" if strict else "start", ids)


def continue_(*ids: str, strict: bool = False) -> Route:
    return Route("continue!" if strict else "continue", ids)


def stop(*ids: str) -> Route:
    return Route("stop", ids)


@dataclass(frozen=True)
class StepContext:
    """What a step may know besides state and message: its identity and the message's time."""

    process: str
    instance_id: str
    now: float
    """The time of the message being handled (seconds since the epoch)."""
    message_id: str
    correlation_id: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Retry:
    delay: timedelta


@dataclass(frozen=True)
class Park:
    pass


@dataclass(frozen=True)
class SkipMessage:
    pass


Policy = Retry | Park | SkipMessage


class ProcessManager(Generic[S]):
    """Subclass and override. `name` keys the stored instances: never rename it casually."""

    name: str = ""
    interested_in: tuple[type[Message], ...] = ()
    """Event types routed to `interested`; other events are never decoded for this process."""
    state_type: type[S] | None = None
    """The type state is decoded into (a msgspec Struct or dataclass); None for plain JSON."""
    max_attempts: int = 5

    def initial(self) -> S:
        raise NotImplementedError

    def interested(self, event: Message) -> Route | None:
        return None

    def handle(self, state: S, message: Message, ctx: StepContext) -> Sequence[Command | Effect]:
        return ()

    def evolve(self, state: S, message: Message) -> S:
        return state

    def on_error(self, error: Exception, message: Message, attempts: int) -> Policy:
        """Retry with exponential backoff, then park (the instance waits for an operator)."""
        if attempts >= self.max_attempts:
            return Park()
        return Retry(timedelta(seconds=min(2 ** (attempts - 1), 300)))
