"""Ctrl-C: every command answers `error: interrupted` on stderr, with --json the one object
{"error": "interrupted"} on stdout, exit code 130; the store stays consistent, and `run`
finishes an interrupted demo with the outcome the simulation predicts.

Real subprocesses and real SIGINTs, sent once the demo is past its setup and processing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from credit_contracts.demo import DemoPlan
from credit_contracts.simulator import expected_outcome

from .support import COMMAND, log_head, logged_outcomes, run_here

PLAN = DemoPlan(seed=5, contracts=1500)
DEMO = ("demo", "--contracts", "1500", "--seed", "5")


def interrupt(path: Path, at_head: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Start the CLI on `path`, send SIGINT once its log reaches `at_head`; its outcome."""
    process = subprocess.Popen(
        [*COMMAND, *args, "--db", f"sqlite:///{path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    try:
        while log_head(path) < at_head:
            assert process.poll() is None, f"{args[0]} ended before the moment to interrupt it"
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_interrupted(done: subprocess.CompletedProcess[str], as_json: bool) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert done.stderr == "error: interrupted\n"
    if as_json:
        assert done.stdout.count("\n") == 1
        assert json.loads(done.stdout) == {"error": "interrupted"}
    else:
        assert done.stdout == ""


def test_ctrl_c_with_json_prints_the_error_object_and_run_finishes(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    setup = PLAN.contracts + PLAN.customers + 2  # the plan, the simulation, the setup
    assert_interrupted(interrupt(path, setup + 1000, *DEMO, "--json"), as_json=True)
    head = log_head(path)
    assert_interrupted(interrupt(path, head + 1000, "run", "--json"), as_json=True)
    finished = run_here("run", "--db", f"sqlite:///{path}", "--json")
    assert finished.code == 0, finished.stderr
    summary = finished.data
    assert summary["still_pending"] == 0 and summary["matches_expected"] is True
    expected = {cid: expected_outcome(PLAN.simulation, cid) for cid in PLAN.contracts_of_changed()}
    assert logged_outcomes(f"sqlite:///{path}") == expected


@pytest.mark.parametrize("moment", ["setup", "processing"])
def test_ctrl_c_for_a_person_is_one_line(tmp_path: Path, moment: str) -> None:
    path = tmp_path / "demo.db"
    at_head = 500 if moment == "setup" else PLAN.contracts + 500
    assert_interrupted(interrupt(path, at_head, *DEMO), as_json=False)
    again = run_here(*DEMO, "--db", f"sqlite:///{path}", "--json")  # the same demo resumes
    assert again.code == 0 and again.data["matches_expected"] is True
