"""Commands that only look open the store read-only: a read-only file in a read-only folder
can be inspected, and inspecting leaves the file exactly as it was (no write, no migration,
no -wal or -shm file). The commands that record keep the read models current instead.

(Under root, permissions do not stop a writer: the assertions are about what the commands
did to the file, which holds for any user.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from credit_contracts.app import build_app
from credit_contracts.domain.messages import ChangeCustomerCreditRating
from credit_contracts.processes.credit_change import batch_id_for
from procession import Runtime, open_store
from tests.cli.support import run_here

READERS = [
    ("customers", "show", "ada"),
    ("contracts", "show", "k1"),
    ("batches", "list"),
    ("batches", "list", "--customer", "ada"),
    ("batches", "show", batch_id_for("ada", 1)),
]


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir())
    }


@pytest.fixture
def frozen_store(tmp_path: Path) -> Iterator[str]:
    """A store with a customer, a contract and a running batch, then made read-only."""
    folder = tmp_path / "store"
    folder.mkdir()
    url = f"sqlite:///{folder}/cc.db"
    for args in (
        ("customers", "register", "Ada", "AA", "--id", "ada"),
        ("contracts", "open", "ada", "--id", "k1"),
        ("customers", "change-rating", "ada", "B"),
        ("run",),
    ):
        assert run_here(*args, "--db", url).code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["cc.db"]
    (folder / "cc.db").chmod(0o444)
    folder.chmod(0o555)
    try:
        yield url
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_read_only_store_can_be_inspected_and_is_left_as_it_was(
    frozen_store: str, args: tuple[str, ...]
):
    folder = Path(frozen_store[len("sqlite:///") :]).parent
    before = fingerprint(folder)
    result = run_here(*args, "--db", frozen_store, "--json")
    assert result.code == 0, result.stderr
    assert result.data  # one JSON object
    assert fingerprint(folder) == before


def test_what_the_read_commands_show_is_what_the_writers_recorded(frozen_store: str):
    shown = run_here("customers", "show", "ada", "--db", frozen_store, "--json").data
    assert (shown["rating"], shown["contracts"]["pending"]) == ("B", 1)
    contract = run_here("contracts", "show", "k1", "--db", frozen_store, "--json").data
    assert contract["status"] == "pending"


def test_a_show_right_after_a_command_sees_it_without_a_run(tmp_path: Path):
    """The writer brings the read models up to its command, so the reader need not write."""
    url = f"sqlite:///{tmp_path}/cc.db"
    run_here("customers", "register", "Ada", "AA", "--id", "ada", "--db", url)
    run_here("contracts", "open", "ada", "--id", "k1", "--title", "Lease", "--db", url)
    shown = run_here("customers", "show", "ada", "--db", url, "--json")
    assert shown.data["contracts"]["active"] == 1 and shown.stderr == ""
    assert run_here("contracts", "show", "k1", "--db", url, "--json").data["title"] == "Lease"


def test_lagging_read_models_are_shown_with_a_note(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/cc.db"
    run_here("customers", "register", "Ada", "AA", "--id", "ada", "--db", url)
    with open_store(url) as store:  # a command recorded by something that did not catch up
        change = ChangeCustomerCreditRating(customer_id="ada", new_rating="B")
        Runtime(build_app(), store).send(change)
    result = run_here("customers", "show", "ada", "--db", url, "--json")
    assert result.code == 0 and result.data["rating"] == "AA"  # as of the read models
    assert "1 event behind the log" in result.stderr and "credit-contracts run" in result.stderr


def test_reading_a_missing_store_creates_nothing(tmp_path: Path):
    result = run_here("customers", "show", "ada", "--db", f"sqlite:///{tmp_path}/none.db")
    assert result.code == 2 and "no store at" in result.stderr
    assert os.listdir(tmp_path) == []
