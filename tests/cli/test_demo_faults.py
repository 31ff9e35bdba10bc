"""A demo outlives its faults: a worker that dies is restarted and its death explained, one
that keeps dying makes the demo give up saying why, a dropped database connection ends
nothing, and a demo killed before it recorded anything is reported as such by `run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from credit_contracts.demo import DemoPlan

from .support import COMMAND, log_head, ok, run_cli
from .test_demo import check_finished, check_outcomes

PLAN = DemoPlan(seed=7, contracts=1500, customers=2)
DEMO = ("demo", "--contracts", "1500", "--customers", "2", "--seed", "7")


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc: psutil is not installed)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def with_param(url: str, key: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{key}={value}"


def start_demo(url: str, workers: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, *DEMO, "--workers", str(workers), "--db", url, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def batch_started(url: str) -> bool:
    """The demo's batch has dispatched its first items (the workers are at work)."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM batch_items WHERE status <> 'pending'")
            found = row.fetchone()
    except psycopg.Error:  # the schema is not there yet
        return False
    return bool(found and found[0] > 0)


def wait_until(demo: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        assert demo.poll() is None, f"the demo ended before {what}: {demo.communicate()}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


def finish(demo: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = demo.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        demo.kill()
        out, err = demo.communicate()
        pytest.fail(f"the demo did not end: {err[-2000:]}")
    assert "Traceback" not in out + err, err
    return demo.returncode, out, err


def test_a_worker_killed_mid_batch_is_restarted_and_the_demo_completes(pg_url: str) -> None:
    demo = start_demo(pg_url, 3)
    wait_until(demo, lambda: len(children(demo.pid)) == 3, "three workers ran")
    wait_until(demo, lambda: batch_started(pg_url), "the batch started")
    victim = children(demo.pid)[0]
    os.kill(victim, signal.SIGKILL)
    code, out, err = finish(demo)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    check_finished(data, PLAN)
    assert data["workers"] == 3 and data["worker_restarts"] == 1
    [line] = [ln for ln in err.splitlines() if f"worker {victim} died" in ln]
    assert "killed by SIGKILL" in line and "restarted as worker" in line
    check_outcomes(pg_url, PLAN)


def test_a_worker_that_keeps_dying_makes_the_demo_give_up_saying_why(pg_url: str) -> None:
    """The OOM killer, say: every worker is SIGKILLed as soon as it appears. After three
    restarts of a slot the demo stops its workers and ends with an error naming the cause."""
    demo = start_demo(pg_url, 2)
    killed: set[int] = set()
    deadline = time.monotonic() + 120
    while demo.poll() is None and time.monotonic() < deadline:
        for pid in children(demo.pid):
            if pid not in killed:
                killed.add(pid)
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    code, out, err = finish(demo)
    assert code == 2, err
    last = err.splitlines()[-1]
    assert last.startswith("error: worker ") and "killed by SIGKILL" in last
    assert "died 4 times" in last and "giving up" in last
    assert json.loads(out)["error"] == last[len("error: ") :]
    restarts = [ln for ln in err.splitlines() if "restarted as worker" in ln]
    assert 3 <= len(restarts) <= 6  # three per slot at most, of two slots


def terminate(application_name: str) -> int:
    """pg_terminate_backend on every session of the demo (its coordinator's and its
    workers'), found by the application_name in its URL: no other test is touched."""
    from tests.conftest import PG_URL

    with psycopg.connect(PG_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid() AND application_name = %s",
            (application_name,),
        ).fetchall()
    return len(rows)


def test_dropped_connections_end_neither_the_demo_nor_its_workers(pg_url: str) -> None:
    name = f"demo-{uuid.uuid4().hex[:8]}"
    url = with_param(pg_url, "application_name", name)
    demo = start_demo(url, 2)
    wait_until(demo, lambda: batch_started(pg_url), "the batch started")
    kills = 0
    for _ in range(3):
        if demo.poll() is not None:
            break
        kills += terminate(name)
        time.sleep(0.5)
    code, out, err = finish(demo)
    assert code == 0, err
    assert kills > 0
    data = json.loads(out)
    check_finished(data, PLAN)
    check_outcomes(pg_url, PLAN)


# -- killed before its first commit ------------------------------------------------------------

SMALL = ("demo", "--contracts", "50", "--seed", "5")


def test_a_demo_killed_at_its_very_start_is_finished_or_reported_empty(tmp_path: Path) -> None:
    """Killed as its store is being created, a few ms apart: `run` either finishes the demo
    (the plan was recorded) or says plainly that nothing was recorded."""
    outcomes: dict[str, int] = {"no store": 0, "empty": 0, "finished": 0}
    for n, delay in enumerate([0, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.12]):
        folder = tmp_path / f"k{n}"
        folder.mkdir()
        path = folder / "d.db"
        url = f"sqlite:///{path}"
        demo = subprocess.Popen(
            [*COMMAND, *SMALL, "--db", url, "--json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not any(folder.iterdir()) and demo.poll() is None:  # its first file
            assert time.monotonic() < deadline
            time.sleep(0.0005)
        time.sleep(delay)
        demo.kill()
        demo.wait()
        if not path.exists():
            outcomes["no store"] += 1
            result = run_cli("run", "--db", url, "--clock", "virtual", "--json")
            assert result.code == 2 and "no store at" in result.data["error"]
        elif log_head(path) == 0:
            outcomes["empty"] += 1
            result = run_cli("run", "--db", url, "--clock", "virtual")
            assert result.code == 0 and "the store is empty: nothing to run" in result.stdout
            data = ok("run", "--db", url, "--clock", "virtual")
            assert data["events"] == 0
            # the same demo again starts it afresh on the store left behind
            assert ok(*SMALL, "--db", url)["matches_expected"] is True
        else:
            outcomes["finished"] += 1
            summary = ok("run", "--db", url, "--clock", "virtual")
            assert summary["matches_expected"] is True and summary["still_pending"] == 0
    assert sum(outcomes.values()) == 9, outcomes


def test_a_worker_whose_database_is_unreachable_while_it_starts_waits_for_it(
    pg_url: str, tmp_path: Path
) -> None:
    """`credit-contracts worker` reads the store's plan and clock before its loop: a database
    that refuses it, or drops it, then must be waited for, as during the loop (the chaos
    test found a worker ending with exit 1 on a connection terminated at start-up)."""
    from tests.engine.test_connection_faults import Relay

    ok("customers", "register", "Ada", "AA", "--id", "ada", "--db", pg_url, "--json")
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    relay = Relay((str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))))
    relayed = pg_url.replace(f":{info.get('port', 5432)}/", f":{relay.port}/", 1)
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [*COMMAND, "worker", "--db", relayed], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("start-up failed") < 2:  # refused: it waits, backing off
            assert worker.poll() is None, f"the worker exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        relay.up()
        while "started on postgres" not in log.read_text():
            assert worker.poll() is None, f"the worker exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        relay.down()
    assert "Traceback" not in log.read_text()
    assert "stopped" in log.read_text()
