"""Real worker processes on PostgreSQL: shared work, one instance at a time, takeover on death.

Workers are started as separate OS processes with `python -m procession.cli worker`, the
command an operator runs; one is killed with SIGKILL half way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procession import Runtime, Store, VirtualClock, open_store
from tests.support.commands import commands_by_status
from tests.support.toy import AccountOpened, ReviewGroup, build_app

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 20_000


def seed(url: str, n: int) -> Store:
    store = open_store(url, build_app().messages)
    chunk: list[tuple[str, list[AccountOpened], int]] = []
    for i in range(n):
        account_id = f"w{i:06}"
        chunk.append(
            (f"Account-{account_id}", [AccountOpened(account_id=account_id, group="g")], 0)
        )
        if len(chunk) == 2000:
            store.append_batch(chunk)
            chunk = []
    if chunk:
        store.append_batch(chunk)
    return store


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "procession.cli",
            "worker",
            "--app",
            "tests.support.toy:build_app",
            "--db",
            url,
            "--clock",
            "virtual",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for_batch(
    rt: Runtime, batch_id: str, timeout: float, until_done: int | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = rt.progress(batch_id)
        if progress is not None:
            if until_done is not None and progress.done >= until_done:
                return
            if progress.status == "completed":
                return
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} not finished in {timeout} s: {rt.progress(batch_id)}")


def wait_until_quiescent(rt: Runtime, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not rt.quiescent():
        assert time.monotonic() < deadline, "work was still left"
        time.sleep(0.5)


def stop(workers: list[subprocess.Popen[bytes]]) -> list[int]:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    return [w.wait(timeout=60) for w in workers]


@pytest.mark.slow
def test_two_workers_share_a_20k_batch_one_killed_half_way(pg_url: str) -> None:
    with seed(pg_url, ITEMS) as store:
        observer = Runtime(build_app(), store, VirtualClock(store=store))
        observer.send(ReviewGroup(group="g"))
        workers = [start_worker(pg_url), start_worker(pg_url)]
        try:
            wait_for_batch(observer, "review-g-1", timeout=400, until_done=ITEMS // 4)
            workers[0].kill()  # SIGKILL: its open transaction dies with it
            workers[0].wait()
            workers.append(start_worker(pg_url))
            wait_for_batch(observer, "review-g-1", timeout=600)
            wait_until_quiescent(observer, timeout=300)  # the last steps follow the outcomes
        finally:
            codes = stop(workers)
        assert codes[1:] == [0, 0], "the survivors stop gracefully on SIGTERM"
        assert_exactly_once(store)


def assert_exactly_once(store: Store) -> None:
    with store.transaction() as tx:
        per_type = dict(tx.sql("SELECT type, COUNT(*) FROM events GROUP BY type"))
        assert per_type["AccountFrozen"] == per_type["AccountThawed"] == ITEMS
        once = tx.sql(
            "SELECT COUNT(*) FROM (SELECT stream_id FROM events WHERE type = 'AccountFrozen'"
            " GROUP BY stream_id HAVING COUNT(*) = 1) s"
        )[0][0]
        assert once == ITEMS, "every account frozen exactly once"
        items = dict(tx.sql("SELECT status, COUNT(*) FROM batch_items GROUP BY status"))
        assert items == {"done": ITEMS}
        # each watch ran exactly its five steps, in order: a lost update from two workers
        # running one instance at once would show as a lower version or fewer reminders
        watches = tx.sql(
            "SELECT status, version, state, COUNT(*) FROM process_instances"
            " WHERE process = 'FreezeWatch' GROUP BY status, version, state"
        )
        assert watches == [("done", 5, '{"reminders":2}', ITEMS)]
        assert commands_by_status(tx, "AccountThawed") == {"done": 2 * ITEMS + 1}
        assert tx.sql("SELECT COUNT(*) FROM inbox")[0][0] == 0
