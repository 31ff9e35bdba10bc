"""No skipped events on PostgreSQL (DESIGN §5, STYLE rule 6).

Identity values are drawn at INSERT and become visible at COMMIT, so two concurrent
appenders can commit positions out of order. A reader that keeps a checkpoint ("everything
up to position N is read") would then skip the lower, later-committed position forever.

`test_plain_identity_column_can_expose_a_higher_id_first` is the negative control: with no
lock, a higher id is visible while a lower one is still uncommitted, and a checkpointing reader
loses it. The other tests show that procession's appends never let that happen: a second
appender waits for the first one to commit, so positions become visible strictly in order.
These tests are PostgreSQL-only by nature: SQLite has a single writer by construction.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from contract.support import Counted, make_registry
from procession.store import Store, open_store

TIMEOUT = 15.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def waiting_on_events_lock(url: str) -> bool:
    """True when some transaction waits for a lock on this schema's `events` table."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE NOT l.granted AND c.oid = to_regclass('events')"
        ).fetchone()
    return bool(row and row[0])


class TailingReader(threading.Thread):
    """Polls `read_all` from its checkpoint, as a subscriber would, and checks every snapshot.

    Each poll also reads the whole log, and records whether a position was ever visible while
    a lower one was not (a *gap*) - the situation that makes a checkpointing reader skip events.
    """

    def __init__(self, store: Store) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.checkpoint = 1
        self.received: list[int] = []
        self.snapshots: list[list[int]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.poll()
            self.poll()
        except BaseException as exc:  # surfaced by the test thread
            self.error = exc

    def poll(self) -> None:
        for rec in self.store.read_all(from_position=self.checkpoint, page_size=50):
            self.received.append(rec.position)
            self.checkpoint = rec.position + 1
        snapshot = [r.position for r in self.store.read_all()]
        if not self.snapshots or snapshot != self.snapshots[-1]:
            self.snapshots.append(snapshot)

    def finish(self) -> None:
        self.stop.set()
        self.join(TIMEOUT)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error


def test_plain_identity_column_can_expose_a_higher_id_first(pg_url: str) -> None:
    """Negative control: without a lock, a checkpointing reader silently skips an event."""
    with (
        psycopg.connect(pg_url, autocommit=True) as admin,
        psycopg.connect(pg_url) as conn_a,
        psycopg.connect(pg_url) as conn_b,
        psycopg.connect(pg_url, autocommit=True) as reader,
    ):
        admin.execute(
            "CREATE TABLE scratch_log (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " tag TEXT NOT NULL)"
        )
        row_a = conn_a.execute("INSERT INTO scratch_log (tag) VALUES ('a') RETURNING id").fetchone()
        row_b = conn_b.execute("INSERT INTO scratch_log (tag) VALUES ('b') RETURNING id").fetchone()
        assert row_a is not None and row_b is not None
        id_a, id_b = row_a[0], row_b[0]
        assert id_a < id_b
        conn_b.commit()  # B commits first: nothing made it wait for A

        visible = [r[0] for r in reader.execute("SELECT id FROM scratch_log ORDER BY id")]
        assert visible == [id_b], "the higher id is visible while the lower one is not"
        checkpoint = max(visible) + 1

        conn_a.commit()
        after = [
            r[0]
            for r in reader.execute(
                "SELECT id FROM scratch_log WHERE id >= %s ORDER BY id", (checkpoint,)
            )
        ]
        everything = [r[0] for r in reader.execute("SELECT id FROM scratch_log ORDER BY id")]
        assert after == [], "a reader resuming from its checkpoint never sees A"
        assert everything == [id_a, id_b], "yet A's row is in the table: it was skipped"


def test_second_appender_waits_for_the_first_to_commit(pg_url: str) -> None:
    registry = make_registry()
    with (
        open_store(pg_url, registry) as store_a,
        open_store(pg_url, registry) as store_b,
        open_store(pg_url, registry) as store_r,
    ):
        reader = TailingReader(store_r)
        a_appended, release_a = threading.Event(), threading.Event()
        b_result: list[Any] = []
        errors: list[BaseException] = []

        def appender_a() -> None:
            try:
                with store_a.transaction() as tx:
                    tx.append("stream-a", [Counted(n=1)])
                    a_appended.set()
                    assert release_a.wait(TIMEOUT)
            except BaseException as exc:
                errors.append(exc)
                a_appended.set()

        def appender_b() -> None:
            try:
                b_result.append(store_b.append("stream-b", [Counted(n=2)]))
            except BaseException as exc:
                errors.append(exc)

        reader.start()
        thread_a = threading.Thread(target=appender_a, daemon=True)
        thread_b = threading.Thread(target=appender_b, daemon=True)
        thread_a.start()
        assert a_appended.wait(TIMEOUT)
        thread_b.start()
        try:
            # B is really running concurrently: it is blocked, waiting on A's lock
            wait_for(
                lambda: waiting_on_events_lock(pg_url) or not thread_b.is_alive(),
                "B to block on A's lock or to finish",
            )
            assert thread_b.is_alive(), "B committed while A was open: appends are not serialised"
            time.sleep(0.2)  # let the reader poll while A is open and B is waiting
            assert thread_b.is_alive() and not b_result, "B must not commit before A"
            assert [r.position for r in store_r.read_all()] == []
        finally:
            release_a.set()
        thread_a.join(TIMEOUT)
        thread_b.join(TIMEOUT)
        assert not errors, errors
        wait_for(lambda: len(reader.received) == 2, "the reader to see both events")
        reader.finish()

        log = list(store_r.read_all())
        assert [r.stream_id for r in log] == ["stream-a", "stream-b"]
        position_a, position_b = (r.position for r in log)
        assert position_a < position_b
        assert b_result[0].position == position_b
        assert reader.received == [position_a, position_b]
        for snapshot in reader.snapshots:
            assert position_b not in snapshot or position_a in snapshot, (
                f"the reader saw B ({position_b}) without A ({position_a}): {snapshot}"
            )


def test_many_concurrent_appenders_never_skip_an_event(pg_url: str) -> None:
    """Stress: slow concurrent appending transactions while a reader tails by checkpoint."""
    registry = make_registry()
    writers, appends_each = 5, 30
    stores = [open_store(pg_url, registry) for _ in range(writers)]
    try:
        _hammer(stores, open_store(pg_url, registry), appends_each)
    finally:
        for store in stores:
            store.close()


def _hammer(stores: list[Store], reader_store: Store, appends_each: int) -> None:
    writers = len(stores)
    with reader_store:
        reader = TailingReader(reader_store)
        errors: list[BaseException] = []
        start = threading.Barrier(writers)

        def writer(w: int) -> None:
            rng = random.Random(w)
            try:
                start.wait()
                for i in range(appends_each):
                    with stores[w].transaction() as tx:
                        tx.append(f"w-{w}", [Counted(n=i)])
                        time.sleep(rng.random() * 0.004)  # widen the commit window
            except BaseException as exc:
                errors.append(exc)

        reader.start()
        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        everything = [r.position for r in reader_store.read_all()]
        assert len(everything) == writers * appends_each
        wait_for(lambda: reader.checkpoint > everything[-1], "the reader to reach the head")
        reader.finish()

        assert reader.received == everything, "the tailing reader skipped or repeated events"
        for snapshot in reader.snapshots:
            assert snapshot == everything[: len(snapshot)], f"gap in snapshot {snapshot}"
