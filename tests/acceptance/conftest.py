"""Fixtures of the credit_contracts acceptance tests: a whole system on a virtual clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from credit_contracts.simulator import SimulationConfig

from .system import System


@pytest.fixture
def make_system(store_url: str) -> Iterator[Callable[..., System]]:
    """Build systems on the test's store (one per test: a second one shares the store)."""
    made: list[System] = []

    def make(
        simulation: SimulationConfig | None = None, url: str | None = None, **options: Any
    ) -> System:
        system = System(url or store_url, simulation, **options)
        made.append(system)
        return system

    yield make
    for system in made:
        system.close()
