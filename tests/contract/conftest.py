"""Contract fixtures: a registry of test messages and an open store on each backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contract.support import make_registry
from procession.messages import MessageRegistry
from procession.store import Store, open_store


@pytest.fixture
def registry() -> MessageRegistry:
    return make_registry()


@pytest.fixture
def store(store_url: str, registry: MessageRegistry) -> Iterator[Store]:
    with open_store(store_url, registry) as opened:
        yield opened
