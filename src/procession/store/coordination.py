"""What workers sharing one database must agree on, as one object per backend.

The runtime asks its store's coordination object, never which backend it runs on:

- `lock_appends`: appenders take turns, so log positions become visible in order;
- `try_singleton` / `wait_singleton`: one holder at a time of a named role (the router, a
  projection, the migrator) for the rest of the transaction;
- `round(store)`: the scope of one round of stages (one transaction for all of them where
  nobody waits for our locks, nothing where other workers do);
- `shared_round` / `exclusive_round` / `hold_gate`: the gate of a shared virtual clock
  (DESIGN §7);
- `maintain`: housekeeping of the work tables (vacuum), by one worker at a time;
- `limits`: how big a bite one stage's transaction takes.

SQLite's object does nothing: a SQLite store belongs to one process, and BEGIN IMMEDIATE
already serialises its writers.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from procession.limits import Limits

if TYPE_CHECKING:
    from procession.store.base import Cursor, Store


class Coordination(Protocol):
    limits: Limits
    others_may_work: bool
    """Other workers may commit work between two of our rounds: before moving a shared
    virtual clock, a round alone must confirm that nothing is ready."""

    def lock_appends(self, cursor: Cursor) -> None: ...
    def try_singleton(self, cursor: Cursor, name: str) -> bool: ...
    def wait_singleton(self, cursor: Cursor, name: str) -> None: ...
    def round(self, store: Store) -> AbstractContextManager[Any]: ...
    def shared_round(self) -> AbstractContextManager[None]: ...
    def exclusive_round(self) -> AbstractContextManager[bool]: ...
    def hold_gate(self, cursor: Cursor) -> None:
        """Inside a shared round: hold the gate in this transaction too, until it ends."""
        ...

    def maintain(self) -> None: ...
