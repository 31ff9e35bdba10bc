"""A worker never exits on a dropped or refused database connection (issue 7).

Real `procession worker` processes on PostgreSQL, each in its own OS process, while the test
keeps pulling the database from under them:

- every second, `pg_terminate_backend` on every session of the worker (found by a unique
  `application_name` in its URL, so no other test's sessions are touched), on the virtual and
  on the system clock, until the run is over;
- the database unreachable when the worker starts, and again for a while in the middle of
  the run (the worker talks to PostgreSQL through a TCP relay the test opens and closes).

The worker must still be running at the end, the run must be complete with every item done
exactly once and every timer fired, the failures must be in its log, and SIGTERM must still
stop it with exit code 0. Nothing here asserts a duration: the runs are sized to last a few
seconds so that many kills land inside them, and the timeouts only bound a hung run.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from procession import (
    App,
    Message,
    Runtime,
    Schedule,
    StepContext,
    Store,
    SystemClock,
    VirtualClock,
    open_store,
)
from procession.runtime.clock import EPOCH, VIRTUAL_KEY
from tests.conftest import PG_URL
from tests.support import toy
from tests.support.commands import commands_by_status
from tests.support.toy import AccountFrozen, AccountOpened, ReviewGroup, build_app

ROOT = Path(__file__).resolve().parents[2]
BATCH = "review-g-1"
RUN_TIMEOUT = 90.0
"""Bounds a hung run only; a healthy one is over in seconds."""
DAY = 86_400.0


# -- the toy app with timers of seconds, for the system clock ----------------------------------


class QuickFreezeWatch(toy.FreezeWatch):
    """The toy's FreezeWatch (remind, remind, thaw) with seconds where it has days, so that on
    the system clock the batch finishes (its outcome is the thaw) while the test waits."""

    def handle(self, state: toy.WatchState, message: Message, ctx: StepContext) -> list[Any]:
        if isinstance(message, AccountFrozen):
            return [
                Schedule("remind-1", after=timedelta(seconds=1)),
                Schedule("remind-2", after=timedelta(seconds=2)),
                Schedule("thaw", after=timedelta(seconds=3)),
            ]
        return super().handle(state, message, ctx)


def build_quick_app() -> App:
    """`toy.build_app()` with QuickFreezeWatch in place of FreezeWatch."""
    app = App("toy")
    app.register(
        toy.AccountOpened,
        toy.AccountFrozen,
        toy.AccountThawed,
        toy.AccountClosed,
        toy.GroupReviewRequested,
        toy.Reminder,
    )
    for command in (toy.OpenAccount, toy.Freeze, toy.Thaw, toy.Close):
        app.command(command, toy.Account, to=lambda c: c.account_id)
    app.command(ReviewGroup, toy.Group, to=lambda c: c.group)
    app.projection(toy.AccountsByGroup())
    app.process(toy.GroupReview())
    app.process(QuickFreezeWatch())
    app.target_source("accounts_of_group", toy.accounts_of_group, projection="accounts_by_group")
    app.batch_template("freeze", toy.freeze_template)
    app.batch_outcome(toy.AccountThawed, target=lambda e: e.account_id, outcome="done")
    app.batch_outcome(toy.AccountClosed, target=lambda e: e.account_id, outcome="skipped")
    return app


APPS = {
    "virtual": ("tests.support.toy:build_app", build_app),
    "system": ("tests.engine.test_connection_faults:build_quick_app", build_quick_app),
}


# -- set-up and checks -------------------------------------------------------------------------


def with_param(url: str, key: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{key}={quote(value)}"


def seed(store: Store, n: int) -> None:
    """n accounts of group "g" (the review batch freezes each, FreezeWatch thaws it)."""
    for start in range(0, n, 2000):
        store.append_batch(
            [
                (f"Account-f{i:06}", [AccountOpened(account_id=f"f{i:06}", group="g")], 0)
                for i in range(start, min(start + 2000, n))
            ]
        )


def start_worker(
    app: str, url: str, clock: str, log: Path, *options: str
) -> tuple[subprocess.Popen[bytes], Callable[[], str]]:
    """A real `procession worker`; its output goes to a file (a pipe nobody reads while the
    test runs would fill up and block it). Returns it and a reader of its output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "procession.cli",
                "worker",
                "--app",
                app,
                "--db",
                url,
                "--clock",
                clock,
                *options,
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return worker, lambda: log.read_text(errors="replace")


@contextmanager
def running(worker: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Never leave a worker behind (its schema is dropped after the test)."""
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def stop_gracefully(worker: subprocess.Popen[bytes], output: Callable[[], str]) -> None:
    assert worker.poll() is None, f"the worker exited:\n{tail(output())}"
    worker.send_signal(signal.SIGTERM)
    try:
        code = worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        raise AssertionError(f"SIGTERM did not stop the worker:\n{tail(output())}") from None
    assert code == 0, f"the worker exited {code} on SIGTERM:\n{tail(output())}"
    assert "worker stopped" in output()


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def finished(observer: Runtime) -> bool:
    """The batch completed and nothing is left to do anywhere (read from the test's own
    connections, which nobody terminates)."""
    progress = observer.progress(BATCH)
    if progress is None or progress.status != "completed":
        return False
    # `quiescent` judges what is ready by the observer's own clock: a virtual one must first
    # catch up with the time the worker moved the shared clock to, and under the same gate
    # (re-entrant: one session), so that the worker cannot move it again in between.
    # Without this, deliveries due days after the observer's stale instant looked not ready.
    with observer.coordination.exclusive_round() as alone:
        if not alone:
            return False
        observer.clock.sync()
        return observer.quiescent()


def assert_exactly_once(store: Store, n: int) -> None:
    with store.transaction() as tx:
        per_type = dict(tx.sql("SELECT type, COUNT(*) FROM events GROUP BY type"))
        assert per_type["AccountFrozen"] == per_type["AccountThawed"] == n
        once = tx.sql(
            "SELECT COUNT(*) FROM (SELECT stream_id FROM events WHERE type = 'AccountFrozen'"
            " GROUP BY stream_id HAVING COUNT(*) = 1) s"
        )[0][0]
        assert once == n, "every account frozen exactly once"
        items = dict(tx.sql("SELECT status, COUNT(*) FROM batch_items GROUP BY status"))
        assert items == {"done": n}
        # both reminders fired, then the thaw: the timers ran, each exactly once
        watches = tx.sql(
            "SELECT status, version, state, COUNT(*) FROM process_instances"
            " WHERE process = 'FreezeWatch' GROUP BY status, version, state"
        )
        assert watches == [("done", 5, '{"reminders":2}', n)]
        assert commands_by_status(tx, "AccountThawed") == {"done": 2 * n + 1}
        assert tx.sql("SELECT COUNT(*) FROM inbox")[0][0] == 0
        assert tx.sql("SELECT COUNT(*) FROM timers")[0][0] == 0


def terminate(admin: psycopg.Connection[Any], application_name: str) -> int:
    """pg_terminate_backend on every session of the worker; how many there were.

    It waits (a little) for one of them to be inside a transaction, so that the kill cuts
    work in flight and not only sessions idle in the pool (which are replaced unseen)."""
    mine = "datname = current_database() AND pid <> pg_backend_pid() AND application_name = %s"
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        busy = admin.execute(
            f"SELECT COUNT(*) FROM pg_stat_activity WHERE {mine} AND state <> 'idle'",
            (application_name,),
        ).fetchone()
        if busy and busy[0]:
            break
        time.sleep(0.005)
    rows = admin.execute(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {mine}",
        (application_name,),
    ).fetchall()
    return sum(1 for (ok,) in rows if ok)


# -- sessions terminated every second ----------------------------------------------------------

ITEMS = {"virtual": 3000, "system": 2000}
"""About 6 s of work each without faults: with a kill every second, several land inside it."""


@pytest.mark.parametrize("clock", ["virtual", "system"])
def test_a_worker_whose_sessions_are_terminated_every_second_finishes_the_run(
    pg_url: str, tmp_path: Path, clock: str
) -> None:
    app_spec, make_app = APPS[clock]
    n = ITEMS[clock]
    name = f"faulty_{uuid.uuid4().hex[:12]}"
    with open_store(pg_url, make_app().messages) as store:
        seed(store, n)
        observer = Runtime(
            make_app(), store, VirtualClock(store=store) if clock == "virtual" else SystemClock()
        )
        observer.send(ReviewGroup(group="g"))
        worker, output = start_worker(
            app_spec, with_param(pg_url, "application_name", name), clock, tmp_path / "w.log"
        )
        kills = rounds = 0
        with running(worker), closing(psycopg.connect(PG_URL, autocommit=True)) as admin:
            deadline = time.monotonic() + RUN_TIMEOUT
            while True:
                assert worker.poll() is None, f"the worker exited:\n{tail(output())}"
                kills += terminate(admin, name)
                rounds += 1
                if finished(observer):
                    break
                assert time.monotonic() < deadline, (
                    f"the run did not finish: {observer.progress(BATCH)}\n{tail(output())}"
                )
                time.sleep(1.0)
            assert worker.poll() is None, f"the worker exited:\n{tail(output())}"
            log = output()
            stop_gracefully(worker, output)
        assert_exactly_once(store, n)
        if clock == "virtual":
            with store.transaction() as tx:
                reached = float(tx.get_meta(VIRTUAL_KEY) or 0)
            assert reached >= EPOCH + 3 * DAY, "the virtual clock moved to the thaws"
    assert kills >= 2 and rounds >= 2, "the run lasted long enough to be shot at"
    assert "worker round failed" in log, f"the failures were logged:\n{tail(log)}"
    assert "Traceback" not in log


def test_a_worker_until_idle_whose_sessions_are_terminated_every_second_finishes_and_exits(
    pg_url: str, tmp_path: Path
) -> None:
    """`--until-idle` runs another loop (`run_until_idle`): it too retries, and exits 0 only
    once the run is over."""
    n = ITEMS["virtual"]
    name = f"faulty_{uuid.uuid4().hex[:12]}"
    with open_store(pg_url, build_app().messages) as store:
        seed(store, n)
        Runtime(build_app(), store, VirtualClock(store=store)).send(ReviewGroup(group="g"))
        worker, output = start_worker(
            "tests.support.toy:build_app",
            with_param(pg_url, "application_name", name),
            "virtual",
            tmp_path / "w.log",
            "--until-idle",
        )
        kills = 0
        with running(worker), closing(psycopg.connect(PG_URL, autocommit=True)) as admin:
            deadline = time.monotonic() + RUN_TIMEOUT
            while worker.poll() is None:
                kills += terminate(admin, name)
                assert time.monotonic() < deadline, f"the run did not finish:\n{tail(output())}"
                time.sleep(1.0)
        log = output()
        assert worker.returncode == 0, f"the worker exited {worker.returncode}:\n{tail(log)}"
        assert_exactly_once(store, n)
    assert kills >= 2, "the run lasted long enough to be shot at"
    assert "failed (1 in a row)" in log, f"the failures were logged:\n{tail(log)}"
    assert "Traceback" not in log


# -- the database unreachable at start-up, and again for a while -------------------------------


class Relay:
    """A TCP relay to PostgreSQL on a local port, which the test can take down (every
    connection through it cut, new ones refused) and bring up again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with closing(socket.socket()) as probe:  # a free port, nothing listening on it yet
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            doomed, self._sockets = self._sockets, set()
        for sock in doomed:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            thread = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            thread.start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select(timeout=1.0):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
                with self._lock:
                    if a not in self._sockets:
                        return
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            with self._lock:
                self._sockets -= {a, b}
            for sock in (a, b):
                sock.close()


def mid_run(observer: Runtime) -> bool:
    """Items of the batch are out (dispatched, or frozen and waiting for their thaw)."""
    progress = observer.progress(BATCH)
    return progress is not None and progress.in_flight > 0


def wait_until(
    what: str,
    condition: Callable[[], bool],
    worker: subprocess.Popen[bytes],
    output: Callable[[], str],
) -> None:
    """Wait for `condition`; fail at once if the worker exits meanwhile."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while not condition():
        assert worker.poll() is None, f"the worker exited ({what}):\n{tail(output())}"
        assert time.monotonic() < deadline, f"{what}: never happened\n{tail(output())}"
        time.sleep(0.2)


def test_a_worker_outlives_a_database_unreachable_at_start_and_for_a_while(
    pg_url: str, tmp_path: Path
) -> None:
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    relay = Relay((str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))))
    relayed = pg_url.replace(f":{info.get('port', 5432)}/", f":{relay.port}/", 1)
    assert relayed != pg_url
    n = 1000
    with open_store(pg_url, build_app().messages) as store:
        seed(store, n)
        observer = Runtime(build_app(), store, VirtualClock(store=store))
        observer.send(ReviewGroup(group="g"))
        worker, output = start_worker(
            "tests.support.toy:build_app", relayed, "virtual", tmp_path / "w.log"
        )
        try:
            with running(worker):
                # nothing listens yet: the worker must wait for the database, not exit
                wait_until(
                    "a refused start logged",
                    lambda: output().count("start-up failed") >= 2,
                    worker,
                    output,
                )
                relay.up()
                wait_until("the batch under way", lambda: mid_run(observer), worker, output)
                # every connection cut and new ones refused, for a few seconds
                logged = output().count("worker round failed")
                relay.down()
                wait_until(
                    "the outage noticed",
                    lambda: output().count("worker round failed") > logged,
                    worker,
                    output,
                )
                time.sleep(3)
                assert worker.poll() is None, f"the worker exited:\n{tail(output())}"
                relay.up()
                wait_until("the run finished", lambda: finished(observer), worker, output)
                log = output()
                stop_gracefully(worker, output)
        finally:
            relay.down()
        assert_exactly_once(store, n)
    assert "Traceback" not in log
