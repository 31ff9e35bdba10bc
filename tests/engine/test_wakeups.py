"""Idle workers woken by LISTEN/NOTIFY (DESIGN §9), polling still the truth (issue 10).

Nothing here asserts a duration: the workers poll every 60 s, so a step that happens within
the (generous) timeout can only have been woken by a notification; the timeouts only bound
a hung test. Each worker runs `Runtime.run_forever` in a thread on its own store (its own
connections, named by a unique `application_name`); commands are sent from another store.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from procession import Runtime, Store, open_store
from procession.states import CommandStatus
from procession.store.postgres import NOTIFY_CHANNEL, PostgresBackend, Wakeups
from procession.store.work import commands
from tests.conftest import PG_URL
from tests.support.toy import AccountOpened, Freeze, build_app

POLL = 60.0
"""The workers' poll interval here: far beyond every timeout, so only a wake-up counts."""
TIMEOUT = 20.0
"""Bounds a hung test only; a woken worker takes milliseconds."""


def with_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def wait_until(what: str, condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)


class Worker:
    """`run_forever` in a thread, on a store of its own."""

    def __init__(self, url: str, store: Store, poll: float = POLL) -> None:
        self.url = url
        self.store = store
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        runtime = Runtime(build_app(), store)
        self.thread = threading.Thread(
            target=self._run, args=(runtime, poll), name="worker", daemon=True
        )

    def _run(self, runtime: Runtime, poll: float) -> None:
        try:
            runtime.run_forever(self.stop, idle_sleep=poll, max_sleep=poll)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(exc)

    def stopped_within(self, timeout: float) -> bool:
        self.stop.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()


@contextmanager
def worker(pg_url: str, poll: float = POLL, notify: bool | None = None) -> Iterator[Worker]:
    name = f"wake_{uuid.uuid4().hex[:12]}"
    with open_store(with_name(pg_url, name), build_app().messages) as store:
        if notify is not None:
            assert isinstance(store.backend, PostgresBackend)
            store.backend.notify = notify
        w = Worker(name, store, poll)
        w.thread.start()
        try:
            yield w
        finally:
            w.stop.set()
            w.thread.join(TIMEOUT)
        assert not w.errors, w.errors


def listening(admin: psycopg.Connection[Any], name: str) -> list[int]:
    """The pids of the worker's LISTEN sessions."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = %s AND query = %s",
        (name, f"LISTEN {NOTIFY_CHANNEL}"),
    ).fetchall()
    return [pid for (pid,) in rows]


def watching(store: Store, account_id: str) -> bool:
    """FreezeWatch ran its step for the account (the freeze reached a process step)."""
    with store.transaction(write=False) as tx:
        rows = tx.sql(
            "SELECT 1 FROM process_instances WHERE process = 'FreezeWatch' AND instance_id = :i",
            {"i": account_id},
        )
    return bool(rows)


def routed(store: Store) -> bool:
    with store.transaction(write=False) as tx:
        return tx.checkpoint("router") >= tx.head_position()


@pytest.fixture
def sender(pg_url: str) -> Iterator[tuple[Store, Runtime]]:
    """Another store (its own connections) that sends the commands; one account opened."""
    with open_store(pg_url, build_app().messages) as store:
        store.append("Account-a1", [AccountOpened(account_id="a1", group="g")])
        yield store, Runtime(build_app(), store)


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[Any]]:
    with closing(psycopg.connect(PG_URL, autocommit=True)) as conn:
        yield conn


def test_an_idle_worker_is_woken_by_a_command_sent_from_another_connection(
    pg_url: str, sender: tuple[Store, Runtime], admin: psycopg.Connection[Any]
) -> None:
    store, runtime = sender
    with worker(pg_url) as w:
        wait_until("the worker listens", lambda: bool(listening(admin, w.url)))
        wait_until("the opening routed", lambda: routed(store))
        time.sleep(0.5)  # past the round that follows a fresh LISTEN: waiting for 60 s now
        runtime.send(Freeze(account_id="a1", reason="test"))
        wait_until("the freeze reaches FreezeWatch", lambda: watching(store, "a1"))
        assert w.stopped_within(TIMEOUT)


def test_without_notifications_the_same_worker_waits_for_its_poll(
    pg_url: str, sender: tuple[Store, Runtime], admin: psycopg.Connection[Any]
) -> None:
    """The control of the test above: what woke that worker was the notification."""
    store, runtime = sender
    with worker(pg_url, notify=False) as w:
        wait_until("the opening routed", lambda: routed(store))
        time.sleep(0.5)
        runtime.send(Freeze(account_id="a1", reason="test"))
        time.sleep(2.0)
        assert not watching(store, "a1"), "nothing woke the worker: it polls every 60 s"
        assert listening(admin, w.url) == [], "notifications off: no LISTEN session"
        assert w.stopped_within(TIMEOUT)


def test_a_terminated_listen_session_is_opened_again_and_wakes_the_worker(
    pg_url: str, sender: tuple[Store, Runtime], admin: psycopg.Connection[Any]
) -> None:
    store, runtime = sender
    with worker(pg_url) as w:
        wait_until("the worker listens", lambda: bool(listening(admin, w.url)))
        wait_until("the opening routed", lambda: routed(store))
        [first] = listening(admin, w.url)
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        wait_until(
            "a new LISTEN session",
            lambda: bool(listening(admin, w.url)) and first not in listening(admin, w.url),
        )
        time.sleep(0.5)
        runtime.send(Freeze(account_id="a1", reason="test"))
        wait_until("the freeze reaches FreezeWatch", lambda: watching(store, "a1"))
        assert w.thread.is_alive()
        assert w.stopped_within(TIMEOUT)


def test_a_worker_that_cannot_listen_polls(
    pg_url: str, sender: tuple[Store, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No LISTEN session to be had: the wait is the plain poll it replaces."""
    monkeypatch.setattr(Wakeups, "_listen", lambda self: False)
    store, runtime = sender
    with worker(pg_url, poll=0.2) as w:
        runtime.send(Freeze(account_id="a1", reason="test"))
        wait_until("the freeze reaches FreezeWatch", lambda: watching(store, "a1"))
        assert w.stopped_within(TIMEOUT)


def test_the_stop_event_ends_a_wait_for_a_notification(
    pg_url: str, admin: psycopg.Connection[Any]
) -> None:
    with worker(pg_url) as w:
        wait_until("the worker listens", lambda: bool(listening(admin, w.url)))
        time.sleep(0.5)  # inside its 60 s wait
        assert w.stopped_within(TIMEOUT), "stop ended the wait"


def test_a_sqlite_worker_sleeps_and_stops_when_told(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/s.db", build_app().messages) as store:
        stop = threading.Event()
        started = time.monotonic()
        assert store.backend.wait_for_wakeup(0.05, stop) is False
        assert time.monotonic() - started >= 0.05
        w = Worker("sqlite", store)
        w.thread.start()
        time.sleep(0.3)
        assert w.stopped_within(TIMEOUT)
        assert not w.errors


# -- what notifies -----------------------------------------------------------------------------


@pytest.fixture
def listener(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    with closing(psycopg.connect(pg_url, autocommit=True)) as conn:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        yield conn


def received(conn: psycopg.Connection[Any]) -> list[str]:
    """The payloads of this schema that arrived (a commit's notifications are there when it
    returns; a short wait covers the loopback). Other schemas' are other tests' or benches'."""
    row = conn.execute("SELECT current_schema()").fetchone()
    schema = row[0] if row else ""
    return [n.payload for n in conn.notifies(timeout=0.3) if n.payload == schema]


def test_an_appending_transaction_notifies_once_on_commit_with_its_schema(
    pg_url: str, listener: psycopg.Connection[Any]
) -> None:
    with open_store(pg_url, build_app().messages) as store:
        schema = listener.execute("SELECT current_schema()").fetchone()
        with store.transaction() as tx:
            for i in range(3):
                tx.append(f"Account-n{i}", [AccountOpened(account_id=f"n{i}", group="g")])
                tx.flush()
            assert received(listener) == [], "nothing before the commit"
        assert received(listener) == [schema[0] if schema else ""]
        store.head_position()  # a read notifies nothing
        assert received(listener) == []


def test_a_rolled_back_transaction_does_not_notify(
    pg_url: str, listener: psycopg.Connection[Any]
) -> None:
    with open_store(pg_url, build_app().messages) as store:
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.append("Account-r", [AccountOpened(account_id="r", group="g")])
            tx.flush()
            raise RuntimeError("undo")
        assert received(listener) == []
        assert store.read_stream("Account-r") == []


def test_a_command_queued_in_the_outbox_notifies(
    pg_url: str, listener: psycopg.Connection[Any]
) -> None:
    app = build_app()
    with open_store(pg_url, app.messages) as store:
        Runtime(app, store)  # the work tables and the projection's
        received(listener)
        with store.transaction() as tx:
            message = {"type": "Freeze", "schema_version": 1, "data": "{}", "metadata": "{}"}
            commands.record(tx, "c-1", CommandStatus.PENDING, time.time(), message)
        assert len(received(listener)) == 1


def test_procession_notify_0_turns_wakeups_off(
    pg_url: str, listener: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCESSION_NOTIFY", "0")
    with open_store(pg_url, build_app().messages) as store:
        assert isinstance(store.backend, PostgresBackend)
        assert store.backend.notify is False
        store.append("Account-o", [AccountOpened(account_id="o", group="g")])
        assert received(listener) == []
        stop = threading.Event()
        started = time.monotonic()
        assert store.backend.wait_for_wakeup(0.1, stop) is False  # a plain sleep
        assert time.monotonic() - started >= 0.1
