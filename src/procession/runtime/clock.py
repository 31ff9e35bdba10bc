"""One clock interface: the system clock in production, a virtual one in tests and demos.

The virtual clock only moves when told: the runtime fast-forwards it to the next due timer
when nothing else is ready, so fourteen days of process time pass in milliseconds through
the same code. Its current time is kept in the store, so a run killed at any moment resumes
at the virtual time it had reached.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

from procession.store.base import VIRTUAL_TIME_KEY as VIRTUAL_KEY
from procession.store.base import Store, Tx

EPOCH = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
"""Where a new virtual clock starts: a fixed instant, so runs are reproducible."""


class Clock(Protocol):
    virtual: bool

    def now(self) -> float: ...
    def advance_to(self, when: float) -> None: ...
    def sync(self) -> None: ...
    def sync_in(self, tx: Tx) -> None: ...


class SystemClock:
    virtual = False

    def now(self) -> float:
        return time.time()

    def sync(self) -> None:
        pass

    def sync_in(self, tx: Tx) -> None:
        pass

    def advance_to(self, when: float) -> None:
        raise RuntimeError("the system clock cannot be advanced")


class VirtualClock:
    """Time that moves only forward and only when advanced; durable when given a store."""

    virtual = True
    EPOCH = EPOCH
    """Where a new virtual clock starts by default (2030-01-01 UTC)."""

    def __init__(self, start: float = EPOCH, store: Store | None = None) -> None:
        self._store = store
        self.origin = start
        """The instant this clock started at (a demo counts its days from it)."""
        self._now = start
        if store is not None:
            with store.transaction(write=not store.readonly) as tx:
                saved = tx.get_meta(VIRTUAL_KEY)
                if saved is None:
                    tx.set_meta(VIRTUAL_KEY, repr(start))  # a read-only store refuses this
                else:
                    self._now = float(saved)

    def now(self) -> float:
        return self._now

    def advance_to(self, when: float) -> None:
        """Move to `when` (never back). With a store, the move counts once it is committed:
        if the transaction fails (the connection dropped), this clock stays where it was,
        and it never runs ahead of the time it keeps in the store."""
        if when <= self._now:
            return
        if self._store is None:
            self._now = when
            return
        with self._store.transaction() as tx:
            saved = tx.get_meta(VIRTUAL_KEY)
            now = max(when, float(saved) if saved else when)
            tx.set_meta(VIRTUAL_KEY, repr(now))
        self._now = now

    def sync(self) -> None:
        """Catch up with time another worker process advanced the shared clock to."""
        if self._store is not None:
            with self._store.transaction(write=False) as tx:
                saved = tx.get_meta(VIRTUAL_KEY)
            if saved is not None:
                self._now = max(self._now, float(saved))

    def sync_in(self, tx: Tx) -> None:
        """`sync`, in a transaction of the caller's (one that holds the gate). A clock
        without a store keeps its own time, as with `sync`."""
        if self._store is None:
            return
        saved = tx.get_meta(VIRTUAL_KEY)
        if saved is not None:
            self._now = max(self._now, float(saved))

    def advance(self, seconds: float) -> None:
        self.advance_to(self._now + seconds)
