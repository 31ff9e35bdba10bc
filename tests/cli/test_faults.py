"""Fault injection: a demo SIGKILLed at any moment is finished by `credit-contracts run`, with
exactly the outcome of an uninterrupted demo of the same seed, contract by contract.

The moments are read from the store the demo writes (its log head and its durable virtual
clock), so each kill lands in a known phase: during setup, while the batch revokes, and on
virtual days 1, 8 and 14 of the re-signing.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from credit_contracts.demo import DemoPlan, setup_done
from procession import open_store

from .support import COMMAND, final_statuses, logged_outcomes, ok

PLAN = DemoPlan(seed=11, contracts=400)
DEMO = ("demo", "--contracts", "400", "--seed", "11")
EPOCH = 1893456000.0  # procession's virtual clock starts at 2030-01-01
DAY = 86_400.0
COMPARED = ("contracts", "affected", "reconfirmed", "terminated", "still_pending", "batch_status")
Moment = Callable[[int, float], bool]
MOMENTS: dict[str, Moment] = {
    "setup, the plan recorded": lambda head, day: head >= 1,
    "setup, the customers registered": lambda head, day: head >= 5,
    "revocations": lambda head, day: head >= 700,
    "day 1": lambda head, day: day >= 1,
    "day 8": lambda head, day: day >= 8,
    "day 14": lambda head, day: day >= 14,
}


def peek(path: Path) -> tuple[int, float]:
    """The demo's log head and virtual day, read beside it (0, 0 before it has either)."""
    if not path.exists():
        return 0, 0.0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            head = db.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]
            found = db.execute(
                "SELECT value FROM procession_meta WHERE key = 'virtual_clock'"
            ).fetchone()
    except sqlite3.Error:  # the schema is not there yet
        return 0, 0.0
    return int(head), (float(found[0]) - EPOCH) / DAY if found else 0.0


def kill_when(moment: Moment, path: Path, *args: str) -> None:
    """Start the CLI on `path`, SIGKILL it the moment `moment` holds; fail if it ends first."""
    process = subprocess.Popen(
        [*COMMAND, *args, "--db", f"sqlite:///{path}", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    try:
        while not moment(*peek(path)):
            assert process.poll() is None, f"{args[0]} ended before the moment to kill it"
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.001)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path_factory.mktemp('reference')}/reference.db"
    summary = ok(*DEMO, "--db", url)
    assert summary["still_pending"] == 0 and summary["matches_expected"] is True
    return {
        "summary": {key: summary[key] for key in COMPARED},
        "statuses": final_statuses(url, PLAN.customer_ids),
        "outcomes": logged_outcomes(url),
    }


def assert_same_as(uninterrupted: dict[str, Any], url: str, summary: dict[str, Any]) -> None:
    assert {key: summary[key] for key in COMPARED} == uninterrupted["summary"]
    assert final_statuses(url, PLAN.customer_ids) == uninterrupted["statuses"]
    assert logged_outcomes(url) == uninterrupted["outcomes"]


def in_setup(url: str) -> bool:
    with open_store(url) as store:
        return not setup_done(store, PLAN)


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_killed_demo_is_finished_by_run(
    tmp_path: Path, uninterrupted: dict[str, Any], moment: str
) -> None:
    path = tmp_path / "killed.db"
    kill_when(MOMENTS[moment], path, *DEMO)
    url = f"sqlite:///{path}"
    killed_in_setup = in_setup(url)
    if moment.startswith("setup"):
        # the whole setup of 400 contracts takes ~60 ms; the poll above reacts within ~1 ms
        assert killed_in_setup, "the kill was meant to land during setup"
    summary = ok("run", "--db", url, "--clock", "virtual")
    assert_same_as(uninterrupted, url, summary)


def test_killed_twice_and_resumed_by_the_demo_itself(
    tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    path = tmp_path / "twice.db"
    kill_when(MOMENTS["day 1"], path, *DEMO)
    kill_when(lambda head, day: day >= 9, path, "run", "--clock", "virtual")
    url = f"sqlite:///{path}"
    summary = ok(*DEMO, "--db", url)  # the same demo again: it resumes, it does not restart
    assert_same_as(uninterrupted, url, summary)
