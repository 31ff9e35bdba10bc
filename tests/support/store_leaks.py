"""Which stores are open, and who opened them: the bookkeeping behind "tests close the stores
they open" (the autouse fixture and the hooks are in tests/conftest.py).

A store is tracked by its backend (the connection or pool it holds; views made with
`Store.using` share it): opened when a `Store` is built over a backend not seen yet, closed when
`Store.close` or the backend's own `close` runs (`open_store` closes the backend itself when
migrating fails). Only weak references are kept, so tracking keeps nothing alive; a store
garbage-collected while still open counts as left open.

A store belongs to the test during which it was opened (`owner` None), or to the fixture of
wider scope (module, session) whose set-up opened it (`owner` names it).

This lives in its own module, not in conftest.py, because conftest.py is also imported as
`tests.conftest` by some tests: the patching must happen once, with one set of records.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import weakref
from dataclasses import dataclass
from typing import Any

from procession.store.base import Store


@dataclass(eq=False)
class Opened:
    serial: int
    url: str
    owner: str | None
    """None: the running test; else the wider-scoped fixture that opened it."""
    ref: weakref.ref[Any] | None = None
    closed: bool = False
    collected: bool = False


_opened: dict[int, Opened] = {}  # id(backend) -> its record, while the backend is alive
_collected_open: list[Opened] = []  # backends garbage-collected without being closed
_serials = itertools.count(1)
owners: list[str] = []
"""The wider-scoped fixtures being set up, innermost last (pushed by a conftest hook)."""
_patched_backends: set[type] = set()


def next_serial() -> int:
    """A mark: the stores opened from now on have a greater serial."""
    return next(_serials)


def _record_of(backend: object) -> Opened | None:
    record = _opened.get(id(backend))
    if record is not None and record.ref is not None and record.ref() is backend:
        return record
    return None


def _mark_closed(backend: object) -> None:
    record = _record_of(backend)
    if record is not None:
        record.closed = True


def _track(backend: object) -> None:
    if _record_of(backend) is not None:
        return  # a view of a store already tracked
    record = Opened(
        next(_serials), str(getattr(backend, "url", "?")), owners[-1] if owners else None
    )

    def collected(_: object, key: int = id(backend)) -> None:
        if _opened.get(key) is record:
            del _opened[key]
        if not record.closed:
            record.collected = True
            _collected_open.append(record)

    record.ref = weakref.ref(backend, collected)
    _opened[id(backend)] = record
    cls: type[Any] = type(backend)
    if cls not in _patched_backends:  # `open_store` may close a backend without its Store
        _patched_backends.add(cls)
        close = cls.close

        @functools.wraps(close)
        def closing(self: Any, *args: Any, **kwargs: Any) -> Any:
            _mark_closed(self)
            return close(self, *args, **kwargs)

        cls.close = closing


def left_open(owner: str | None, after: int = 0) -> list[Opened]:
    """The stores of `owner` opened after serial `after` and not closed. Closes those still
    alive, so that one test's leak does not spill into the tests after it."""
    found = [
        r
        for r in [*_opened.values(), *_collected_open]
        if r.owner == owner and r.serial > after and not r.closed
    ]
    for record in found:
        _collected_open[:] = [r for r in _collected_open if r is not record]
        backend = record.ref() if record.ref is not None else None
        if backend is not None:
            with contextlib.suppress(Exception):
                backend.close()
        record.closed = True
    return found


def describe(records: list[Opened]) -> str:
    return ", ".join(
        f"{r.url}{' (garbage-collected unclosed)' if r.collected else ''}" for r in records
    )


def _install() -> None:
    init, close = Store.__init__, Store.close

    @functools.wraps(init)
    def tracking_init(self: Store, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        _track(self.backend)

    @functools.wraps(close)
    def tracking_close(self: Store) -> None:
        _mark_closed(self.backend)
        close(self)

    Store.__init__ = tracking_init  # type: ignore[method-assign]
    Store.close = tracking_close  # type: ignore[method-assign]


_install()  # once: a module is imported once
