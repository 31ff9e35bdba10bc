"""Aggregates: pure decide/evolve functions over a state, loaded by id, saved with a version.

An aggregate is data, not a class hierarchy: a category (the stream prefix), an initial state,
`evolve(state, event) -> state` and `decide(state, command) -> events`. Both are pure; the
repository does the I/O. `decide` raises `CommandRejected` (or `Skipped`, `NotFound`) to
refuse a command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from procession.messages import Command, Event

S = TypeVar("S")


@dataclass(frozen=True)
class Aggregate(Generic[S]):
    category: str
    initial: S
    evolve: Callable[[S, Any], S]
    decide: Callable[[S, Any], Sequence[Event]]
    snapshot_every: int = 0
    """Write a snapshot every N events (0: never). State must be msgspec-encodable."""

    def stream_id(self, aggregate_id: str) -> str:
        return f"{self.category}-{aggregate_id}"

    def fold(self, state: S, events: Sequence[Event]) -> S:
        for event in events:
            state = self.evolve(state, event)
        return state

    def run(self, state: S, command: Command) -> tuple[Sequence[Event], S]:
        """Decide, then evolve: the events a command yields and the state after them."""
        events = self.decide(state, command)
        return events, self.fold(state, events)
