"""The chaos tests: a bounded run in every `make test`, a long one with `make chaos`.

The long variant is marked `chaos_long` and runs only when CHAOS_LONG=1 is set (as
`make chaos` does): it takes minutes, which `make test` cannot spend.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from credit_contracts.demo import DemoPlan

from .audit import Audit, audit
from .scenario import uninterrupted

LONG = os.environ.get("CHAOS_LONG") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos_long: the long chaos run of `make chaos`")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="the long chaos run: `make chaos` (CHAOS_LONG=1)")
    for item in items:
        if "chaos_long" in item.keywords and not LONG:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[DemoPlan, Audit]:
    """The audit of an uninterrupted demo of a plan (on SQLite), computed once per plan."""
    return _References(tmp_path_factory.mktemp("reference"))


class _References(dict[DemoPlan, Audit]):
    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def __missing__(self, plan: DemoPlan) -> Audit:
        url = f"sqlite:///{self.folder}/seed{plan.seed}-{plan.contracts}.db"
        uninterrupted(url, plan)
        self[plan] = found = audit(url, plan)
        return found
