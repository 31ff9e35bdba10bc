"""Chaos on PostgreSQL: three `credit-contracts worker` processes share the credit scenario
while the test, their supervisor, SIGKILLs one at seeded random moments (every 1-3 s) and
restarts it, and a thread terminates every session they hold every 2-4 s.

The demo sets the scenario up (customers, contracts, the rating change) and is itself
SIGKILLed just after; the workers do the rest. Once the faults stop, the workers must finish
on their own; the raw log is then audited and compared, contract by contract, with an
uninterrupted demo of the same seed.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from credit_contracts.app import open_system
from credit_contracts.demo import DemoPlan
from procession import Runtime
from tests.cli.support import COMMAND, ok

from .audit import Audit, assert_same_outcomes, audit, read_log
from .faults import Crew, Terminator, with_application_name
from .scenario import Chaos, Figures, demo_args, seed

BOUNDED = Chaos(DemoPlan(seed=seed(), contracts=1000), kills=12, min_kills=3, min_terminations=2)
LONG = Chaos(
    DemoPlan(seed=seed() + 1, contracts=15_000), kills=200, min_kills=12, min_terminations=6
)
WORKERS = 3
KILL_EVERY = (1.0, 3.0)
TERMINATE_EVERY = (2.0, 4.0)
RUN_TIMEOUT = 1200.0
"""Bounds a hung run only; the bounded one is over in well under a minute."""


def set_up(url: str, plan: DemoPlan, figures: Figures) -> None:
    """`credit-contracts demo` until its rating change is in the log, then SIGKILL: the
    demo has begun processing on its own, and is cut short as a worker would be."""
    demo = subprocess.Popen(
        [*COMMAND, *demo_args(plan), "--db", url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not rating_changed(url):
        assert demo.poll() is None, f"the demo ended during setup: {demo.communicate()}"
        assert time.monotonic() < deadline, "the demo never finished its setup"
        time.sleep(0.01)
    demo.kill()
    demo.communicate()
    figures.kills += 1


def rating_changed(url: str) -> bool:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            found = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM events WHERE type = 'CustomerCreditRatingChanged')"
            ).fetchone()
    except psycopg.Error:  # the schema is not there yet
        return False
    return bool(found and found[0])


def finished(observer: Runtime, batch_id: str) -> bool:
    """The batch completed and nothing is left to do, now or later. The observer's virtual
    clock catches up with the one the workers move, under the gate that keeps them from
    moving it meanwhile (as tests/engine/test_connection_faults.py explains)."""
    progress = observer.progress(batch_id)
    if progress is None or progress.status != "completed":
        return False
    with observer.coordination.exclusive_round() as alone:
        if not alone:
            return False
        observer.clock.sync()
        return observer.quiescent()


def shoot(crew: Crew, name: str, observer: Runtime, chaos: Chaos, figures: Figures) -> None:
    """Kill a seeded random worker every 1-3 s until the run is over or the kills are
    spent, with every session terminated every 2-4 s meanwhile; then let it finish."""
    rng = chaos.rng("postgres/kills")
    terminator = Terminator(name, chaos.rng("postgres/terminations"), TERMINATE_EVERY)
    terminator.start()
    deadline = time.monotonic() + RUN_TIMEOUT
    next_kill = time.monotonic() + rng.uniform(*KILL_EVERY)
    try:
        while not finished(observer, chaos.plan.batch_id):
            crew.assert_alive()
            assert time.monotonic() < deadline, f"the run did not finish: {figures.report()}"
            if figures.kills <= chaos.kills and time.monotonic() >= next_kill:
                crew.kill(rng.randrange(WORKERS))
                figures.kills += 1
                next_kill = time.monotonic() + rng.uniform(*KILL_EVERY)
            if figures.kills > chaos.kills and terminator.is_alive():
                terminator.stop()
            time.sleep(0.1)
    finally:
        terminator.stop()
        figures.terminations, figures.sessions_cut = terminator.rounds, terminator.sessions


def run_chaos(pg_url: str, tmp_path: Path, chaos: Chaos, reference: dict[DemoPlan, Audit]) -> None:
    expected = reference[chaos.plan]
    figures = Figures("postgres", chaos.plan.contracts)
    name = f"chaos-{uuid.uuid4().hex[:12]}"
    url = with_application_name(pg_url, name)
    set_up(url, chaos.plan, figures)
    crew = Crew(url, WORKERS, tmp_path)
    observer = open_system(pg_url, virtual=True)
    with observer.store:
        try:
            shoot(crew, name, observer, chaos, figures)
            crew.assert_alive()
        finally:
            codes = crew.stop()
    assert codes == [0] * WORKERS, f"SIGTERM did not stop the workers cleanly: {codes}"
    log = crew.output()
    assert "Traceback" not in log, log[-3000:]
    check_nothing_left(pg_url)
    found = audit(pg_url, chaos.plan)
    try:
        assert_same_outcomes(found, expected)
    except AssertionError:
        keep_the_evidence(pg_url, found, expected, tmp_path)
        raise
    figures.events, figures.positions_skipped = found.events, found.skipped
    figures.result = "nothing lost or doubled"
    print(figures.report())
    assert figures.kills >= chaos.min_kills, f"too few kills landed: {figures.report()}"
    assert figures.terminations >= chaos.min_terminations, f"too few: {figures.report()}"


def keep_the_evidence(url: str, found: Audit, expected: Audit, folder: Path) -> None:
    """The full events of the contracts that differ, kept beside the test's worker logs (the
    schema is dropped after the test)."""
    differ = {c for c, h in expected.histories.items() if found.histories.get(c) != h}
    with (folder / "differences.txt").open("w") as out:
        for event in read_log(url):
            if event.data.get("contract_id") in differ:
                out.write(f"{event}\n")
    print(f"chaos evidence: {folder}")


def check_nothing_left(url: str) -> None:
    """`credit-contracts run` after the workers: it finds the demo over, with nothing to do."""
    summary: dict[str, Any] = ok("run", "--db", url, "--clock", "virtual")
    assert summary["events"] == 0, f"the workers left work behind: {summary}"
    assert summary["still_pending"] == 0 and summary["matches_expected"] is True, summary


def test_three_workers_killed_and_cut_off_end_as_an_uninterrupted_demo(
    pg_url: str, tmp_path: Path, reference: dict[DemoPlan, Audit]
) -> None:
    run_chaos(pg_url, tmp_path, BOUNDED, reference)


@pytest.mark.chaos_long
@pytest.mark.timeout(3600)
def test_long_chaos_on_postgres(
    pg_url: str, tmp_path: Path, reference: dict[DemoPlan, Audit]
) -> None:
    run_chaos(pg_url, tmp_path, LONG, reference)
