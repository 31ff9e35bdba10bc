"""Fault injection: make the k-th SQL statement fail, as if the process died right there.

A transaction interrupted by an exception is rolled back, exactly what PostgreSQL and SQLite
do with the transaction of a process killed at that point.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from procession import Store


class Crash(BaseException):
    """The injected failure: a BaseException, like the death of the process, so no handler
    policy catches it."""


class CountingCursor:
    def __init__(self, inner: Any, injector: FaultInjector) -> None:
        self._inner = inner
        self._injector = injector

    def execute(self, sql: str, params: Any = None) -> Any:
        self._injector.tick(sql)
        return self._inner.execute(sql, params) if params is not None else self._inner.execute(sql)

    def executemany(self, sql: str, params: Any) -> Any:
        self._injector.tick(sql)
        return self._inner.executemany(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FaultInjector:
    """Counts statements on a store; raises Crash at statement number `crash_at` (1-based)."""

    def __init__(self, store: Store, crash_at: int | None = None) -> None:
        self.store = store
        self.crash_at = crash_at
        self.count = 0
        self.fired = False
        self._original = store.backend.transaction

        @contextmanager
        def transaction(write: bool = True) -> Iterator[Any]:
            with self._original(write) as cursor:
                yield CountingCursor(cursor, self)

        store.backend.transaction = transaction  # type: ignore[method-assign]

    def tick(self, sql: str) -> None:
        if sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            return  # transaction control is not a statement of the step
        self.count += 1
        if self.crash_at is not None and self.count == self.crash_at and not self.fired:
            self.fired = True
            raise Crash(f"injected crash at statement {self.count}: {sql.split()[0]}")

    def remove(self) -> None:
        self.store.backend.transaction = self._original  # type: ignore[method-assign]
