"""The process-manager contract (after Commanded's `interested?`, `handle`, `apply`).

A process declares, per message, whether it starts, continues or stops an instance (one id
or a list: a list is fan-out), or is not interested. `handle` decides what to do from the
state *before* the message; `evolve` folds the message into the state. Both are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from procession.messages import Command, Message
from procession.policy import DEFAULT_POLICY, Decision, Failure, RetryPolicy
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
    position: int | None = None
    """The log position of the event being handled (None for a timer or a batch notice)."""


class ProcessManager(Generic[S]):
    """Subclass and override. `name` keys the stored instances: never rename it casually."""

    name: str = ""
    interested_in: tuple[type[Message], ...] = ()
    """Event types routed to `interested`; other events are never decoded for this process.
    Left empty, it is derived from `interested`'s annotation when the app registers it."""
    state_type: type[S] | None = None
    """The type state is decoded into (a msgspec Struct or dataclass); None for plain JSON."""
    retry_policy: RetryPolicy = DEFAULT_POLICY
    starts_batches: tuple[tuple[str, str], ...] = ()
    """(target source, template) of each batch this process may start: `App.check()`
    refuses one that is not registered."""

    def initial(self) -> S:
        raise NotImplementedError

    def interested(self, event: Any) -> Route | None:
        """Where an event goes. Annotate `event` with the types it takes (`event: A | B`):
        an empty `interested_in` is derived from the annotation, and `App.check()` refuses an
        `interested_in` that omits one of them. Only those types are ever routed here."""
        return None

    def handle(self, state: S, message: Message, ctx: StepContext) -> Sequence[Command | Effect]:
        return ()

    def evolve(self, state: S, message: Message) -> S:
        return state

    def on_error(self, failure: Failure) -> Decision:
        """What to do about a failed step: by default `retry_policy` decides (retry with
        backoff, then park: the instance waits for an operator, every other goes on)."""
        return self.retry_policy.decide(failure)
