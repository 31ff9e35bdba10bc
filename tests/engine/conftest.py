"""Engine fixtures: the stores a test opens are closed by the fixture that opened them.

A runtime does not own its store, so a test that builds one over a store it opened must
close that store itself; these fixtures do it at the end of the test, pass or fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from procession import MessageRegistry, Runtime, Store, VirtualClock, open_store
from tests.support.toy import build_app

MakeRuntime = Callable[[str], tuple[Store, VirtualClock, Runtime]]
OpenStores = Callable[..., Store]


@pytest.fixture
def open_stores() -> Iterator[OpenStores]:
    """`open_store(url, registry)` for one test: every store opened is closed at its end."""
    opened: list[Store] = []

    def open_(url: str, registry: MessageRegistry | None = None) -> Store:
        store = open_store(url, registry)
        opened.append(store)
        return store

    yield open_
    for store in reversed(opened):
        store.close()


@pytest.fixture
def make_runtime(open_stores: OpenStores) -> MakeRuntime:
    """A toy app's runtime on a virtual clock over a store of `url` (closed at the end)."""

    def make(url: str) -> tuple[Store, VirtualClock, Runtime]:
        store = open_stores(url)
        clock = VirtualClock(store=store)
        return store, clock, Runtime(build_app(), store, clock)

    return make
