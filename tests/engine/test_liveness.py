"""Live workers (issue 10): a running worker is listed alive, a stopped one as stopped, and
one that stopped saying anything (killed) as gone once it is stale. On both backends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from procession import Runtime, VirtualClock, open_store, operations
from procession.runtime.liveness import Heartbeat, listing
from tests.engine.conftest import OpenStores
from tests.support.toy import build_app


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def test_a_running_worker_is_alive_and_a_stopped_one_says_goodbye(
    store_url: str, open_stores: OpenStores
) -> None:
    store = open_stores(store_url)
    runtime = Runtime(build_app(), store, VirtualClock(store=store))
    stop = threading.Event()
    worker = threading.Thread(target=runtime.run_forever, args=(stop,), daemon=True)
    worker.start()
    try:
        wait_until("a live worker listed", lambda: any(w["alive"] for w in listing(store)))
        [seen] = operations.status(store)["workers"]
        assert (seen["pid"], seen["stopped_at"], seen["alive"]) == (os.getpid(), None, True)
    finally:
        stop.set()
        worker.join(20)
    [gone] = listing(store)
    assert gone["alive"] is False
    assert gone["stopped_at"] is not None
    assert gone["seen_at"] >= seen["seen_at"]


def test_a_worker_that_stops_beating_is_taken_for_gone_once_stale(
    store_url: str, open_stores: OpenStores
) -> None:
    store = open_stores(store_url)
    heartbeat = Heartbeat(store)
    heartbeat.start()  # and then nothing: as a killed worker
    [fresh] = listing(store, stale_after=60.0)
    assert fresh["alive"] and fresh["worker_id"] == heartbeat.worker_id
    time.sleep(0.05)
    [stale] = listing(store, stale_after=0.01)
    assert stale["alive"] is False
    assert stale["stopped_at"] is None  # it never said goodbye: killed, not stopped


def test_a_killed_worker_process_stays_listed_but_not_alive(store_url: str) -> None:
    """A real worker process, SIGKILLed: its row remains, unstopped, and ages."""
    with open_store(store_url) as store:
        pass  # the schema, before the worker process starts
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "procession",
            "worker",
            "--app",
            "tests.support.toy:build_app",
            "--db",
            store_url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with open_store(store_url) as store:
            wait_until(
                "the worker process listed alive",
                lambda: any(w["pid"] == worker.pid and w["alive"] for w in listing(store)),
            )
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            time.sleep(0.05)
            [row] = [w for w in listing(store, stale_after=0.01) if w["pid"] == worker.pid]
            assert (row["alive"], row["stopped_at"]) == (False, None)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
