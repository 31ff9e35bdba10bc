"""Chaos on SQLite: the demo SIGKILLed at seeded random moments, each time resumed by
`credit-contracts run`, at least twenty times, until a run completes it.

The moments are log heads, not instants: each kill lands when the log has grown by a seeded
random number of events since the process started, so every life of the run makes progress
and the kills spread over setup, revocations, reminders and terminations. The raw log is
then audited and compared, contract by contract, with an uninterrupted demo of the seed.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from credit_contracts.demo import DemoPlan
from tests.cli.support import COMMAND, log_head

from .audit import Audit, assert_same_outcomes, audit
from .scenario import Chaos, Figures, demo_args, seed

BOUNDED = Chaos(DemoPlan(seed=seed(), contracts=1500), kills=22)
LONG = Chaos(DemoPlan(seed=seed() + 1, contracts=10_000), kills=120)
LIFE_TIMEOUT = 120.0
"""Bounds one life of the run (a hung one), never the whole test."""


def start(args: tuple[str, ...], url: str, log: Path) -> subprocess.Popen[str]:
    with log.open("a") as err:
        return subprocess.Popen(
            [*COMMAND, *args, "--db", url, "--json"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


def kill_at(process: subprocess.Popen[str], path: Path, target: int) -> bool:
    """SIGKILL `process` once the log head reaches `target`; False if it ended first."""
    deadline = time.monotonic() + LIFE_TIMEOUT
    while log_head(path) < target:
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"the log never reached {target}"
        time.sleep(0.001)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    return True


def next_target(head: int, last: int, kills_left: int, rng: random.Random) -> int:
    """A seeded random head to kill at: the kills left spread over the log still to come
    (up to `last`), one event ahead at the least, so that every life makes progress."""
    room = max(0, last - head)
    return head + rng.randint(1, max(1, 2 * room // (kills_left + 1)))


def finish(process: subprocess.Popen[str], log: Path) -> dict[str, Any]:
    out, _ = process.communicate(timeout=LIFE_TIMEOUT)
    assert process.returncode == 0, log.read_text()[-2000:]
    summary: dict[str, Any] = json.loads(out)
    return summary


def chaos_on_sqlite(tmp_path: Path, chaos: Chaos, reference: Audit, figures: Figures) -> str:
    """Kill and resume until `chaos.kills` kills have landed, then let a run finish."""
    path, log = tmp_path / "chaos.db", tmp_path / "stderr.log"
    url = f"sqlite:///{path}"
    last = reference.events * 97 // 100  # the last kills still leave work to resume
    args, rng = demo_args(chaos.plan), chaos.rng("sqlite/kills")
    while figures.kills < chaos.kills:
        target = next_target(log_head(path), last, chaos.kills - figures.kills, rng)
        process = start(args, url, log)
        ended = not kill_at(process, path, target)
        assert not ended, f"it ended before head {target}: {finish(process, log)}"
        figures.kills += 1
        args = ("run", "--clock", "virtual")
    summary = finish(start(args, url, log), log)
    assert summary["still_pending"] == 0 and summary["matches_expected"] is True, summary
    assert "Traceback" not in log.read_text()
    return url


def run_chaos(tmp_path: Path, chaos: Chaos, reference: dict[DemoPlan, Audit]) -> None:
    expected = reference[chaos.plan]
    figures = Figures("sqlite", chaos.plan.contracts)
    url = chaos_on_sqlite(tmp_path, chaos, expected, figures)
    found = audit(url, chaos.plan)
    assert_same_outcomes(found, expected)
    figures.events, figures.positions_skipped = found.events, found.skipped
    figures.result = "nothing lost or doubled"
    print(figures.report())
    assert figures.kills >= 20


def test_a_demo_killed_22_times_ends_as_an_uninterrupted_one(
    tmp_path: Path, reference: dict[DemoPlan, Audit]
) -> None:
    run_chaos(tmp_path, BOUNDED, reference)


@pytest.mark.chaos_long
@pytest.mark.timeout(3600)
def test_long_chaos_on_sqlite(tmp_path: Path, reference: dict[DemoPlan, Audit]) -> None:
    run_chaos(tmp_path, LONG, reference)
