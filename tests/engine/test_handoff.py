"""The handoff: deliveries to a free instance run in the transaction that made them.

The log stage routes events, and the timers stage fires timers; in that same transaction
the runtime runs the steps of every instance that is free (its row exists, not parked, not
waiting out a retry, not in `blocked_instances`, nothing of its own in the inbox and, on
PostgreSQL, not locked by another transaction) without writing an inbox row for them. The
deliveries of the other instances are queued in the inbox, in routing order, for the
processes stage. A handed-off step that fails queues its delivery with its failure and the
handed-off deliveries behind it. The handoff is off when the runtime skips the "log" or the
"processes" stage, and in `Runtime.run_once_stages`.

Every test runs on both backends (the lock test on PostgreSQL only).

"No inbox row was written" is observed at the database, never through the engine's code:
on PostgreSQL the inbox id comes from an identity sequence, which no rollback and no delete
takes back, so its last value counts every row ever inserted. SQLite reuses the ids of
deleted rows (`INTEGER PRIMARY KEY` without AUTOINCREMENT: a new id is max(id) + 1), so a
row inserted and deleted in one round leaves no trace in the ids; there the test counts the
INSERT INTO inbox statements the connection runs (its trace callback, called once per row of
an executemany). `test_routing_alone_queues_inbox_rows` checks that both observers see an
insert when there is one.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from procession import (
    Aggregate,
    App,
    Command,
    Decision,
    Event,
    EventInfo,
    Failure,
    Limits,
    Message,
    Park,
    ProcessManager,
    Projection,
    Retry,
    RetryPolicy,
    Route,
    Runtime,
    Schedule,
    Session,
    SkipMessage,
    StepContext,
    Store,
    TimerFired,
    VirtualClock,
    start,
)
from procession.runtime import operations
from procession.store.sqlite import SQLiteBackend
from tests.engine.conftest import OpenStores

# -- a small domain: pokes drive a counter that notes each step in a ledger ---------------------


class Poke(Command, frozen=True, kw_only=True):
    poke_id: str
    instance: str
    n: int
    timer: float = 0.0
    """Positive: the step also sets the timer "t" to fire this many seconds later."""


class Poked(Event, frozen=True, kw_only=True):
    poke_id: str
    instance: str
    n: int
    timer: float


class Note(Command, frozen=True, kw_only=True):
    instance: str
    n: int


class Noted(Event, frozen=True, kw_only=True):
    instance: str
    n: int


def poke_decide(state: int, command: Any) -> list[Event]:
    assert isinstance(command, Poke)
    return [
        Poked(poke_id=command.poke_id, instance=command.instance, n=command.n, timer=command.timer)
    ]


def note_decide(state: int, command: Any) -> list[Event]:
    assert isinstance(command, Note)
    return [Noted(instance=command.instance, n=command.n)]


Pokes = Aggregate("Poke", 0, lambda s, e: s + 1, poke_decide)
Ledger = Aggregate("Ledger", 0, lambda s, e: s + 1, note_decide)

TIMER = -1
"""What the counter notes for its timer "t" firing."""
RETRY = 30.0
"""Seconds a failed step waits by default."""


@dataclass
class Switches:
    """What the test breaks, and mends, while the runtime runs."""

    broken: set[tuple[str, int]] = field(default_factory=set)
    """(instance, n) whose step raises (n = TIMER: the timer's step)."""
    decide: Callable[[Failure], Decision] = lambda f: Retry(timedelta(seconds=RETRY))
    failures: list[Failure] = field(default_factory=list)
    evolved: list[tuple[str, int]] = field(default_factory=list)
    """(instance, n) of every step that went through (evolve runs after a successful
    handle); a timer's message does not name its instance: "" there."""
    unroutable: set[str] = field(default_factory=set)
    """Instances whose events the router cannot route (`interested` raises)."""


class Counter(ProcessManager[list[int]]):
    """One instance per `Poked.instance`; its state lists the steps taken, in order."""

    name = "Counter"
    interested_in = (Poked,)

    def __init__(self, switches: Switches) -> None:
        self.switches = switches

    def initial(self) -> list[int]:
        return []

    def interested(self, event: Poked) -> Route | None:
        if event.instance in self.switches.unroutable:
            raise RuntimeError(f"cannot route {event.instance}")
        return start(event.instance)

    def handle(self, state: list[int], message: Message, ctx: StepContext) -> list[Any]:
        n = message.n if isinstance(message, Poked) else TIMER
        if (ctx.instance_id, n) in self.switches.broken:
            raise RuntimeError(f"step {n} of {ctx.instance_id} is broken")
        effects: list[Any] = [Note(instance=ctx.instance_id, n=n)]
        if isinstance(message, Poked) and message.timer:
            effects.append(Schedule("t", after=timedelta(seconds=message.timer)))
        return effects

    def evolve(self, state: list[int], message: Message) -> list[int]:
        assert isinstance(message, Poked | TimerFired)
        n = message.n if isinstance(message, Poked) else TIMER
        self.switches.evolved.append((message.instance if isinstance(message, Poked) else "", n))
        return [*state, n]

    def on_error(self, failure: Failure) -> Decision:
        self.switches.failures.append(failure)
        return self.switches.decide(failure)


def build_app(switches: Switches) -> App:
    app = App("handoff")
    app.register(Poked, Noted)
    app.command(Poke, Pokes, to=lambda c: c.poke_id)
    app.command(Note, Ledger, to=lambda c: c.instance)
    app.process(Counter(switches))
    return app


# -- observing the inbox -----------------------------------------------------------------------

_INSERT_INBOX = re.compile(r"\bINSERT\s+INTO\s+inbox\b", re.IGNORECASE)


class InboxInserts:
    """How many inbox rows were ever inserted in the store (see the module's docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.traced = 0
        backend = store.backend
        self.sqlite: sqlite3.Connection | None = None
        if isinstance(backend, SQLiteBackend):
            self.sqlite = backend.conn
            self.sqlite.set_trace_callback(self._trace)

    def _trace(self, sql: str) -> None:
        if _INSERT_INBOX.search(sql):
            self.traced += 1

    def count(self) -> int:
        if self.sqlite is not None:
            return self.traced
        with self.store.transaction() as tx:
            [(last,)] = tx.sql(
                "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('inbox', 'id')), 0)"
            )
        return int(last)


@dataclass
class World:
    store: Store
    clock: VirtualClock
    rt: Runtime
    switches: Switches
    inserts: InboxInserts


Make = Callable[[], World]


@pytest.fixture
def make(store_url: str, open_stores: OpenStores) -> Make:
    """The app above on a virtual clock over a fresh store (closed at the end of the test)."""

    def make_() -> World:
        store = open_stores(store_url)
        inserts = InboxInserts(store)
        clock = VirtualClock(store=store)
        switches = Switches()
        return World(store, clock, Runtime(build_app(switches), store, clock), switches, inserts)

    return make_


def poke(rt: Runtime, instance: str, *ns: int, timer: float = 0.0) -> None:
    """One event per n for `instance`, in one transaction (so in one page of the log)."""
    rt.send_many([Poke(poke_id=f"{instance}-{n}", instance=instance, n=n, timer=timer) for n in ns])


def run_stage(rt: Runtime, name: str) -> int:
    """One stage of a round, in its own transaction, exactly as `run_once` runs it (the
    handoff on): what was handed off and what was queued can be seen before the next stage."""
    [stage] = [s for n, s in rt.stages if n == name]
    with rt.store.transaction() as tx:
        return stage(tx, rt.clock.now())


def instance(store: Store, instance_id: str) -> tuple[str, list[int] | None, int]:
    """(status, steps taken, version) of a Counter instance."""
    with store.transaction() as tx:
        [(status, state, version)] = tx.sql(
            "SELECT status, state, version FROM process_instances"
            " WHERE process = 'Counter' AND instance_id = :i",
            {"i": instance_id},
        )
    return (status, None if state is None else json.loads(state), int(version))


def notes(store: Store, instance_id: str) -> list[int]:
    """What the instance's steps noted (each one's inline command's event), in log order."""
    return [e.data["n"] for e in store.read_all() if e.stream_id == f"Ledger-{instance_id}"]


@dataclass(frozen=True)
class Queued:
    id: int
    instance_id: str
    routing: str
    n: int
    attempts: int
    parked: int
    error: str | None
    first_failed_at: float | None
    available_at: float

    def pending(self) -> tuple[str, str, int, int, int, str | None, float | None]:
        """What a plain pending row has: no failure (its availability is checked apart)."""
        return (
            self.instance_id,
            self.routing,
            self.n,
            self.attempts,
            self.parked,
            self.error,
            self.first_failed_at,
        )


def inbox(store: Store) -> list[Queued]:
    with store.transaction() as tx:
        rows = tx.sql(
            "SELECT id, process, instance_id, routing, type, data, attempts, parked, error,"
            " first_failed_at, available_at FROM inbox ORDER BY id"
        )
    queued = []
    for id_, process, instance_id, routing, type_, data, attempts, parked, error, ff, at in rows:
        assert process == "Counter"
        n = json.loads(data)["n"] if type_ == "Poked" else TIMER
        assert type_ == ("Poked" if n != TIMER else "TimerFired")
        queued.append(
            Queued(
                int(id_),
                instance_id,
                routing,
                n,
                int(attempts),
                int(parked),
                error,
                None if ff is None else float(ff),
                float(at),
            )
        )
    return queued


def blocked(store: Store) -> list[tuple[str, int, float]]:
    with store.transaction() as tx:
        rows = tx.sql("SELECT instance_id, parked, until FROM blocked_instances ORDER BY 1")
    return [(r[0], int(r[1]), float(r[2])) for r in rows]


def instance_flags(store: Store, instance_id: str) -> tuple[int, float]:
    """(parked, wait_until) of a Counter instance."""
    with store.transaction() as tx:
        [(parked, wait_until)] = tx.sql(
            "SELECT parked, wait_until FROM process_instances"
            " WHERE process = 'Counter' AND instance_id = :i",
            {"i": instance_id},
        )
    return (int(parked), float(wait_until))


def broken(instance_id: str, n: int) -> str:
    return f"RuntimeError: step {n} of {instance_id} is broken"


def parked_ids(store: Store) -> list[str]:
    return [p["id"] for p in operations.parked(store) if p["kind"] == "delivery"]


# -- 1. a free instance's step runs in the routing transaction, with no inbox row ---------------


def test_a_free_instances_step_runs_in_the_round_that_routes_it_without_an_inbox_row(
    make: Make,
) -> None:
    w = make()
    poke(w.rt, "i1", 1)  # i1 does not exist yet: routing creates it, and it is free
    assert w.rt.run_once() > 0  # one round

    assert instance(w.store, "i1") == ("active", [1], 1)
    assert notes(w.store, "i1") == [1], "its command ran inline: its event is in the log"
    assert w.inserts.count() == 0, "no inbox row was ever written"
    assert inbox(w.store) == []

    # an existing free instance, and a new one, in one page: both run in the log stage itself
    poke(w.rt, "i1", 2)
    poke(w.rt, "i2", 1)
    run_stage(w.rt, "log")
    assert instance(w.store, "i1") == ("active", [1, 2], 2)
    assert instance(w.store, "i2") == ("active", [1], 1)
    assert notes(w.store, "i1") == [1, 2] and notes(w.store, "i2") == [1]
    assert w.inserts.count() == 0
    assert inbox(w.store) == []
    assert w.switches.failures == []


# -- 2. an instance with a queued delivery gets the next ones queued behind it ------------------


def test_deliveries_for_an_instance_with_a_queued_row_are_queued_behind_it_in_order(
    make: Make,
) -> None:
    w = make()
    poke(w.rt, "i1", 1)
    w.rt.run_once_stages({"router"})  # routing alone queues it (the handoff is off there)
    [first] = inbox(w.store)
    assert first.pending() == ("i1", "start", 1, 0, 0, None, None)
    queued_before = w.inserts.count()

    poke(w.rt, "i1", 2, 3)
    poke(w.rt, "i2", 1)  # a free instance in the same page
    run_stage(w.rt, "log")

    rows = inbox(w.store)
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert [r.pending() for r in rows] == [
        ("i1", "start", 1, 0, 0, None, None),
        ("i1", "start", 2, 0, 0, None, None),
        ("i1", "start", 3, 0, 0, None, None),
    ], "the later deliveries wait behind the queued one, in routing order"
    assert rows[0].id == first.id
    assert w.inserts.count() == queued_before + 2, "i1's two, none for the free i2"
    assert instance(w.store, "i1") == ("new", None, 0), "nothing of i1 ran"
    assert instance(w.store, "i2") == ("active", [1], 1)

    run_stage(w.rt, "processes")
    assert instance(w.store, "i1") == ("active", [1, 2, 3], 3)
    assert notes(w.store, "i1") == [1, 2, 3]
    assert inbox(w.store) == []
    w.rt.run_until_idle()
    assert notes(w.store, "i1") == [1, 2, 3] and notes(w.store, "i2") == [1]


# -- 3. a parked or waiting instance gets later deliveries queued, run once it goes on ----------


@pytest.mark.parametrize("decision", ["park", "retry"])
def test_a_blocked_instance_gets_later_deliveries_queued_until_it_goes_on(
    make: Make, decision: str
) -> None:
    w = make()
    t0 = w.clock.now()
    w.switches.broken = {("i1", 1)}
    if decision == "park":
        w.switches.decide = lambda f: Park()
    poke(w.rt, "i1", 1)
    w.rt.run_once()  # handed off, it fails: queued with its failure, i1 blocked

    [failed] = inbox(w.store)
    assert (failed.instance_id, failed.n, failed.attempts) == ("i1", 1, 1)
    assert failed.parked == (1 if decision == "park" else 0)
    until = 0.0 if decision == "park" else t0 + RETRY
    assert blocked(w.store) == [("i1", 1 if decision == "park" else 0, until)]
    assert w.inserts.count() == 1

    poke(w.rt, "i1", 2, 3)
    poke(w.rt, "i2", 1)
    w.rt.run_until_idle_no_advance()  # no time passes: a retry is not due yet

    rows = inbox(w.store)
    assert [(r.instance_id, r.n, r.attempts) for r in rows] == [
        ("i1", 1, 1),
        ("i1", 2, 0),
        ("i1", 3, 0),
    ]
    assert rows[0] == failed, "the failed delivery is as it was"
    assert w.inserts.count() == 3, "i1's two queued; the free i2's handed off"
    assert instance(w.store, "i1") == ("new", None, 0)
    assert notes(w.store, "i1") == []
    assert instance(w.store, "i2") == ("active", [1], 1)

    w.switches.broken.clear()
    if decision == "park":
        assert parked_ids(w.store) == [str(failed.id)]
        assert operations.retry(w.store, str(failed.id))
    w.rt.run_until_idle()  # a retry: the virtual clock moves to it
    assert instance(w.store, "i1") == ("active", [1, 2, 3], 3)
    assert notes(w.store, "i1") == [1, 2, 3]
    assert inbox(w.store) == [] and blocked(w.store) == []
    assert instance_flags(w.store, "i1") == (0, 0.0)
    assert len(w.switches.failures) == 1


@pytest.mark.parametrize("mark", ["parked", "wait_until", "blocked_instances"])
def test_each_mark_of_a_blocked_instance_alone_keeps_it_from_the_handoff(
    make: Make, mark: str
) -> None:
    """A failed step always leaves its delivery queued, which alone keeps the instance from
    the handoff; here the instance is marked without any queued row, one mark at a time, to
    show that each of them is checked."""
    w = make()
    poke(w.rt, "i1", 1)
    w.rt.run_until_idle()
    assert instance(w.store, "i1") == ("active", [1], 1)
    marks = {
        "parked": "UPDATE process_instances SET parked = 1 WHERE instance_id = 'i1'",
        "wait_until": "UPDATE process_instances SET wait_until = 1 WHERE instance_id = 'i1'",
        "blocked_instances": "INSERT INTO blocked_instances (process, instance_id, parked, until)"
        " VALUES ('Counter', 'i1', 0, 1)",
    }
    with w.store.transaction() as tx:
        tx.sql(marks[mark])
    poke(w.rt, "i1", 2)
    run_stage(w.rt, "log")

    [queued] = inbox(w.store)
    assert queued.pending() == ("i1", "start", 2, 0, 0, None, None)
    assert w.inserts.count() == 1
    assert instance(w.store, "i1") == ("active", [1], 1)

    with w.store.transaction() as tx:  # unmarked: the processes stage runs what was queued
        tx.sql("UPDATE process_instances SET parked = 0, wait_until = 0")
        tx.sql("DELETE FROM blocked_instances")
    w.rt.run_until_idle()
    assert instance(w.store, "i1") == ("active", [1, 2], 2)
    assert notes(w.store, "i1") == [1, 2]
    assert inbox(w.store) == []


# -- 4. a handed-off step that fails: queued with its failure, those behind it after it --------


def test_a_failed_handed_off_step_is_queued_with_its_failure_and_the_next_behind_it(
    make: Make,
) -> None:
    w = make()
    w.switches.broken = {("i1", 1)}
    poke(w.rt, "i1", 1, 2)  # one page: both handed off to i1
    poke(w.rt, "i2", 1)
    t0 = w.clock.now()
    run_stage(w.rt, "log")

    failed, behind = inbox(w.store)
    assert failed.id < behind.id
    assert (failed.instance_id, failed.routing, failed.n) == ("i1", "start", 1)
    assert (failed.attempts, failed.parked, failed.error) == (1, 0, broken("i1", 1))
    assert failed.first_failed_at == t0
    assert failed.available_at == t0 + RETRY
    assert behind.pending() == ("i1", "start", 2, 0, 0, None, None), "a plain pending row"
    assert behind.available_at == t0
    assert w.inserts.count() == 2
    assert blocked(w.store) == [("i1", 0, t0 + RETRY)]
    assert instance_flags(w.store, "i1") == (0, t0 + RETRY)
    assert instance(w.store, "i1") == ("new", None, 0), "the failed step left nothing"
    assert notes(w.store, "i1") == []
    assert instance(w.store, "i2") == ("active", [1], 1), "another instance went on"
    [failure] = w.switches.failures
    assert (failure.attempt, failure.first_failed_at, failure.last_error) == (1, t0, None)
    assert failure.subject == "process:Counter/i1"
    assert isinstance(failure.message, Poked) and failure.message.n == 1

    w.rt.run_until_idle_no_advance()  # not due yet: nothing of i1 runs, nothing changes
    assert inbox(w.store) == [failed, behind]
    assert notes(w.store, "i1") == []

    w.switches.broken.clear()
    w.rt.run_until_idle()
    assert w.clock.now() == t0 + RETRY
    assert instance(w.store, "i1") == ("active", [1, 2], 2)
    assert notes(w.store, "i1") == [1, 2], "each ran exactly once, in order"
    assert [s for s in w.switches.evolved if s[0] == "i1"] == [("i1", 1), ("i1", 2)]
    assert inbox(w.store) == [] and blocked(w.store) == []
    assert len(w.switches.failures) == 1


def test_a_failing_handed_off_step_retried_to_its_limit_keeps_its_first_failure(
    make: Make,
) -> None:
    """The queued failure is the first attempt: the retries count on from it."""
    w = make()
    w.switches.broken = {("i1", 1)}
    w.switches.decide = lambda f: Retry(timedelta(seconds=RETRY)) if f.attempt < 3 else Park()
    t0 = w.clock.now()
    poke(w.rt, "i1", 1, 2)
    w.rt.run_until_idle()

    failed, behind = inbox(w.store)
    assert (failed.n, failed.attempts, failed.parked) == (1, 3, 1)
    assert failed.first_failed_at == t0
    assert behind.pending() == ("i1", "start", 2, 0, 0, None, None)
    assert [(f.attempt, f.first_failed_at) for f in w.switches.failures] == [
        (1, t0),
        (2, t0),
        (3, t0),
    ]
    assert [f.last_error for f in w.switches.failures] == [None, broken("i1", 1), broken("i1", 1)]
    assert notes(w.store, "i1") == []


# -- 5. SkipMessage: the failed delivery is dropped, the ones behind it are queued -------------


def test_a_skipped_handed_off_failure_is_dropped_and_the_next_are_queued(make: Make) -> None:
    w = make()
    w.switches.broken = {("i1", 2)}
    w.switches.decide = lambda f: SkipMessage()
    poke(w.rt, "i1", 1, 2, 3, 4)
    run_stage(w.rt, "log")

    assert instance(w.store, "i1") == ("active", [1], 1), "1 ran, 2 failed and was dropped"
    rows = inbox(w.store)
    assert [r.pending() for r in rows] == [
        ("i1", "start", 3, 0, 0, None, None),
        ("i1", "start", 4, 0, 0, None, None),
    ], "no row for the dropped one; the ones behind it queued in order"
    assert w.inserts.count() == 2
    assert blocked(w.store) == []

    run_stage(w.rt, "processes")
    assert instance(w.store, "i1") == ("active", [1, 3, 4], 3)
    assert notes(w.store, "i1") == [1, 3, 4]
    assert inbox(w.store) == []
    w.rt.run_until_idle()
    assert notes(w.store, "i1") == [1, 3, 4]
    assert len(w.switches.failures) == 1


# -- 6. fired timers are handed off too ---------------------------------------------------------


def test_a_fired_timer_runs_in_the_timers_stage_or_is_queued_for_a_blocked_instance(
    make: Make,
) -> None:
    w = make()
    w.switches.decide = lambda f: Park()
    poke(w.rt, "i1", 1, timer=60)
    poke(w.rt, "i2", 1, timer=60)
    w.rt.run_until_idle_no_advance()
    w.switches.broken = {("i2", 2)}
    poke(w.rt, "i2", 2)  # parks i2
    w.rt.run_until_idle_no_advance()
    [parked] = inbox(w.store)
    assert (parked.instance_id, parked.n, parked.parked) == ("i2", 2, 1)
    assert instance(w.store, "i1") == ("active", [1], 1)
    assert instance(w.store, "i2") == ("active", [1], 1)
    assert w.inserts.count() == 1

    w.clock.advance(60)
    w.rt.run_once()  # one round: its timers stage fires both timers

    assert instance(w.store, "i1") == ("active", [1, TIMER], 2), "run in the timers stage"
    assert notes(w.store, "i1") == [1, TIMER]
    rows = inbox(w.store)
    assert [r.pending() for r in rows] == [
        ("i2", "start", 2, 1, 1, broken("i2", 2), parked.first_failed_at),
        ("i2", "timer", TIMER, 0, 0, None, None),
    ], "the blocked instance's timer waits behind its parked delivery"
    assert w.inserts.count() == 2, "the queued timer only"
    assert instance(w.store, "i2") == ("active", [1], 1)
    with w.store.transaction() as tx:
        assert tx.sql("SELECT COUNT(*) FROM timers")[0][0] == 0

    w.switches.broken.clear()
    assert operations.retry(w.store, str(parked.id))
    w.rt.run_until_idle()
    assert instance(w.store, "i2") == ("active", [1, 2, TIMER], 3)
    assert notes(w.store, "i2") == [1, 2, TIMER]
    assert notes(w.store, "i1") == [1, TIMER]
    assert inbox(w.store) == []


def test_a_failing_handed_off_timer_is_queued_with_its_failure(make: Make) -> None:
    w = make()
    poke(w.rt, "i1", 1, timer=60)
    w.rt.run_until_idle_no_advance()
    w.switches.broken = {("i1", TIMER)}
    w.clock.advance(60)
    t1 = w.clock.now()
    run_stage(w.rt, "timers")

    [failed] = inbox(w.store)
    assert failed.pending() == ("i1", "timer", TIMER, 1, 0, broken("i1", TIMER), t1)
    assert failed.available_at == t1 + RETRY
    assert instance(w.store, "i1") == ("active", [1], 1)

    w.switches.broken.clear()
    w.rt.run_until_idle()
    assert instance(w.store, "i1") == ("active", [1, TIMER], 2)
    assert notes(w.store, "i1") == [1, TIMER]
    assert inbox(w.store) == []


# -- 7. PostgreSQL: an instance another transaction holds gets its delivery queued -------------


def without_waiting(action: Callable[[], object], release: Callable[[], None]) -> None:
    """Run `action`; if it is still waiting after a while (for a lock the test holds),
    `release` the lock so that it ends, and fail."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():
        release()
        thread.join()
        pytest.fail("the stage waited for the row another transaction locked")
    if errors:
        raise errors[0]


def test_an_instance_locked_by_another_transaction_gets_its_delivery_queued(
    make: Make, store_url: str, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("row locks of another connection: PostgreSQL only")
    w = make()
    poke(w.rt, "i1", 1)
    w.rt.run_until_idle()
    assert instance(w.store, "i1") == ("active", [1], 1)
    assert w.inserts.count() == 0

    with psycopg.connect(store_url) as other:  # a transaction opens with its first statement
        other.execute(
            "SELECT instance_id FROM process_instances"
            " WHERE process = 'Counter' AND instance_id = 'i1' FOR UPDATE"
        )
        poke(w.rt, "i1", 2)
        poke(w.rt, "i2", 1)
        without_waiting(lambda: run_stage(w.rt, "log"), other.rollback)

        [queued] = inbox(w.store)
        assert queued.pending() == ("i1", "start", 2, 0, 0, None, None)
        assert w.inserts.count() == 1
        assert instance(w.store, "i2") == ("active", [1], 1), "the free one was handed off"
        without_waiting(w.rt.run_once, other.rollback)  # its claim skips the locked row too
        assert inbox(w.store) == [queued]
        assert instance(w.store, "i1") == ("active", [1], 1)
        other.commit()

    w.rt.run_until_idle()
    assert instance(w.store, "i1") == ("active", [1, 2], 2)
    assert notes(w.store, "i1") == [1, 2]
    assert inbox(w.store) == []


# -- 8. the handoff is off where a stage runs alone, or the runtime skips a stage ---------------


def test_routing_alone_queues_inbox_rows(make: Make) -> None:
    w = make()
    poke(w.rt, "i1", 1, timer=60)
    w.rt.run_once_stages({"router"})
    [queued] = inbox(w.store)
    assert queued.pending() == ("i1", "start", 1, 0, 0, None, None)
    assert w.inserts.count() == 1, "the observer sees an inbox row being written"
    assert instance(w.store, "i1") == ("new", None, 0), "no step ran"
    assert notes(w.store, "i1") == []

    assert w.rt.run_once_stages({"processes"}) == 1
    assert instance(w.store, "i1") == ("active", [1], 1)
    assert inbox(w.store) == []

    w.clock.advance(60)
    assert w.rt.run_once_stages({"timers"}) == 1  # a timer fired alone is queued too
    [timer] = inbox(w.store)
    assert timer.pending() == ("i1", "timer", TIMER, 0, 0, None, None)
    assert w.inserts.count() == 2
    assert instance(w.store, "i1") == ("active", [1], 1)
    w.rt.run_once_stages({"processes"})
    assert instance(w.store, "i1") == ("active", [1, TIMER], 2)

    poke(w.rt, "i1", 2)  # the handoff is back on after `run_once_stages`
    w.rt.run_once()
    assert instance(w.store, "i1") == ("active", [1, TIMER, 2], 3)
    assert w.inserts.count() == 2


@pytest.mark.parametrize("skipped", ["processes", "log"])
def test_a_runtime_that_skips_a_stage_does_not_hand_off(make: Make, skipped: str) -> None:
    w = make()
    partial = Runtime(build_app(w.switches), w.store, w.clock, skip=frozenset({skipped}))
    if skipped == "processes":  # it routes: the delivery is queued
        poke(w.rt, "i1", 1)
        partial.run_once()
        [queued] = inbox(w.store)
        assert queued.pending() == ("i1", "start", 1, 0, 0, None, None)
        assert instance(w.store, "i1") == ("new", None, 0), "no step ran"
        after = [1]
    else:  # it fires timers (its processes stage runs before): the timer's is queued
        poke(w.rt, "i1", 1, timer=60)
        w.rt.run_until_idle_no_advance()
        assert w.inserts.count() == 0
        w.clock.advance(60)
        partial.run_once()
        [queued] = inbox(w.store)
        assert queued.pending() == ("i1", "timer", TIMER, 0, 0, None, None)
        assert instance(w.store, "i1") == ("active", [1], 1), "the timer's step did not run"
        after = [1, TIMER]
    assert w.inserts.count() == 1
    w.rt.run_until_idle()
    assert instance(w.store, "i1") == ("active", after, len(after))
    assert inbox(w.store) == []


def test_limits_without_the_handoff_queue_every_delivery(make: Make) -> None:
    w = make()
    queued_only = Runtime(build_app(w.switches), w.store, w.clock, limits=Limits(hand_off=False))
    poke(w.rt, "i1", 1)
    queued_only.run_once()  # one round: routed and queued, then run by the processes stage
    assert instance(w.store, "i1") == ("active", [1], 1)
    assert w.inserts.count() == 1, "its delivery went through the inbox"
    assert inbox(w.store) == []


def test_a_new_instance_is_written_once(make: Make) -> None:
    """A start handed off to an instance that does not exist makes it in memory; its first
    save creates the row (one write, where routing used to insert a 'new' row and the step
    then update it)."""
    w = make()
    if w.inserts.sqlite is None:
        pytest.skip("counts statements through SQLite's trace; PostgreSQL runs the same SQL")
    writes: list[str] = []
    pattern = re.compile(r"\b(INSERT\s+INTO|UPDATE)\s+process_instances\b", re.IGNORECASE)
    w.inserts.sqlite.set_trace_callback(lambda sql: writes.extend(pattern.findall(sql)))
    poke(w.rt, "i1", 1)
    poke(w.rt, "i2", 1)
    run_stage(w.rt, "log")
    assert instance(w.store, "i1") == ("active", [1], 1)
    assert instance(w.store, "i2") == ("active", [1], 1)
    assert len(writes) == 2, writes  # one per instance
    writes.clear()
    poke(w.rt, "i1", 2)  # it exists now: one save
    run_stage(w.rt, "log")
    assert instance(w.store, "i1") == ("active", [1, 2], 2)
    assert [w.upper() for w in writes] == ["UPDATE"]


# -- 9. redelivery through the handoff changes nothing ------------------------------------------


def snapshot(store: Store) -> dict[str, Any]:
    with store.transaction() as tx:
        return {
            "log": [
                (e.stream_id, e.version, e.type, sorted(e.data.items())) for e in store.read_all()
            ],
            "instances": sorted(
                tuple(r)
                for r in tx.sql(
                    "SELECT process, instance_id, status, state, version, parked, last_position,"
                    " seen, timers, wait_until FROM process_instances"
                )
            ),
            "inbox": tx.sql("SELECT COUNT(*) FROM inbox")[0][0],
            "timers": sorted(
                tuple(r) for r in tx.sql("SELECT process, instance_id, name FROM timers")
            ),
            "blocked": tx.sql("SELECT COUNT(*) FROM blocked_instances")[0][0],
            "commands": tx.sql("SELECT COUNT(*) FROM commands")[0][0],
        }


def test_rerouting_every_event_through_the_handoff_changes_nothing(make: Make) -> None:
    w = make()
    poke(w.rt, "i1", 1, timer=60)
    poke(w.rt, "i1", 2)
    poke(w.rt, "i2", 1, 2, 3)
    poke(w.rt, "i3", 1, timer=3600)  # still set when the events are routed again
    w.rt.run_until(w.clock.now() + 120)
    assert w.inserts.count() == 0, "everything went through the handoff"
    assert instance(w.store, "i1") == ("active", [1, 2, TIMER], 3)
    assert instance(w.store, "i2") == ("active", [1, 2, 3], 3)
    assert instance(w.store, "i3") == ("active", [1], 1)
    before = snapshot(w.store)
    evolved = list(w.switches.evolved)

    with w.store.transaction() as tx:  # the router forgets everything: all events re-routed
        tx.set_checkpoint("router", 0)
    w.rt.run_until_idle_no_advance()
    assert snapshot(w.store) == before
    assert w.switches.evolved == evolved, "no step ran again"
    assert w.inserts.count() == 0, "the redeliveries were handed off (and dropped) too"

    w.rt.run_until_idle()  # i3's timer fires once
    assert instance(w.store, "i3") == ("active", [1, TIMER], 2)
    assert notes(w.store, "i3") == [1, TIMER]
    assert notes(w.store, "i1") == [1, 2, TIMER]
    assert notes(w.store, "i2") == [1, 2, 3]


# -- what the log stage undoes is not handed off ----------------------------------------------


def test_a_router_failure_in_the_page_hands_off_what_was_routed_before_it_once(
    make: Make,
) -> None:
    w = make()
    w.switches.unroutable = {"bad"}
    w.rt.send_many(
        [
            Poke(poke_id="i1-1", instance="i1", n=1),
            Poke(poke_id="bad-1", instance="bad", n=1),
            Poke(poke_id="i1-2", instance="i1", n=2),
        ]
    )
    run_stage(w.rt, "log")  # the page fails, then is routed an event at a time up to "bad"
    assert instance(w.store, "i1") == ("active", [1], 1)
    assert inbox(w.store) == []
    assert [p["id"] for p in operations.parked(w.store)] == [], "retried later, not parked"

    w.switches.unroutable.clear()
    w.rt.run_until_idle()  # the router's retry is due: the clock moves to it
    assert instance(w.store, "i1") == ("active", [1, 2], 2)
    assert instance(w.store, "bad") == ("active", [1], 1)
    assert notes(w.store, "i1") == [1, 2]
    assert sorted(w.switches.evolved) == [("bad", 1), ("i1", 1), ("i1", 2)], "each once"
    assert w.inserts.count() == 0


class Picky(Projection):
    """Writes a row per poke; on `Poked` number 99, while `broken` is set, a row whose key
    clashes: a deferred write, refused when the page's writes are sent, after the router
    (the last consumer) applied the page. It parks at once."""

    name = "picky"
    retry_policy = RetryPolicy(max_attempts=1)

    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.on(Poked, self.poked)

    def setup(self, session: Session) -> None:
        session.sql("CREATE TABLE IF NOT EXISTS picky_seen (poke_id TEXT PRIMARY KEY)")

    def reset(self, session: Session) -> None:
        session.sql("DELETE FROM picky_seen")

    def poked(self, session: Session, e: Poked, info: EventInfo) -> None:
        keys = ["clash", "clash"] if self.broken and e.n == 99 else [e.poke_id]
        for key in keys:
            session.write("INSERT INTO picky_seen (poke_id) VALUES (:k)", {"k": key})


def test_a_projection_failing_in_the_page_does_not_hand_off_the_routing_twice(
    store_url: str, open_stores: OpenStores
) -> None:
    """The page is applied to every consumer at once, undone when the projection's write
    fails (after the router routed the page), and applied again consumer by consumer: the
    router's deliveries are handed off once, not once per application."""
    store = open_stores(store_url)
    inserts = InboxInserts(store)
    clock = VirtualClock(store=store)
    switches = Switches()
    app = build_app(switches)
    app.projection(Picky())
    rt = Runtime(app, store, clock)
    poke(rt, "i2", 1)
    rt.run_once_stages({"router"})  # i2 has a queued delivery: the next are queued too
    assert inserts.count() == 1

    poke(rt, "i1", 1, 99)
    poke(rt, "i2", 2)
    run_stage(rt, "log")
    assert [p["id"] for p in operations.parked(store)] == ["projection:picky"]
    assert instance(store, "i1") == ("active", [1, 99], 2)
    assert [r.pending() for r in inbox(store)] == [
        ("i2", "start", 1, 0, 0, None, None),
        ("i2", "start", 2, 0, 0, None, None),
    ], "i2's second delivery queued once"
    assert inserts.count() == 2
    rt.run_until_idle()
    assert instance(store, "i2") == ("active", [1, 2], 2)
    assert switches.evolved == [("i1", 1), ("i1", 99), ("i2", 1), ("i2", 2)]


# -- an instance whose state cannot be read ------------------------------------------------------


def test_an_unreadable_instance_gets_its_handed_off_deliveries_queued_and_is_parked(
    make: Make,
) -> None:
    w = make()
    poke(w.rt, "i1", 1)
    w.rt.run_until_idle()
    with w.store.transaction() as tx:
        tx.sql("UPDATE process_instances SET state = 'not json' WHERE instance_id = 'i1'")
    t0 = w.clock.now()
    poke(w.rt, "i1", 2, 3)
    poke(w.rt, "i2", 1)
    run_stage(w.rt, "log")

    first, second = inbox(w.store)
    assert first.id < second.id
    assert (first.instance_id, first.n, first.attempts, first.parked) == ("i1", 2, 1, 1)
    assert first.error is not None
    assert first.error.startswith("cannot load the state of Counter i1: ")
    assert (first.first_failed_at, first.available_at) == (t0, t0)
    assert second.pending() == ("i1", "start", 3, 0, 0, None, None)
    assert w.inserts.count() == 2
    assert instance_flags(w.store, "i1")[0] == 1
    assert blocked(w.store) == [("i1", 1, 0.0)]
    with w.store.transaction() as tx:
        assert tx.sql("SELECT state, version FROM process_instances WHERE instance_id = 'i1'")[
            0
        ] == ("not json", 1), "its stored state is left as it is"
    assert instance(w.store, "i2") == ("active", [1], 1)
    assert parked_ids(w.store) == [str(first.id)]
    w.rt.run_until_idle()
    assert inbox(w.store) == [first, second]


# -- a timer of a process this runtime does not run ---------------------------------------------


def test_a_timer_of_a_process_another_app_runs_is_queued_for_that_app(make: Make) -> None:
    """Apps may share a store: the processes stage leaves alone an instance of a process
    its app does not run. The timers stage fires every due timer, whoever set it: one of a
    process this app does not run cannot be handed off here; it is queued for its own app."""
    w = make()
    poke(w.rt, "i1", 1, timer=60)
    w.rt.run_until_idle_no_advance()
    other = App("other")
    other.register(Noted)
    other.command(Note, Ledger, to=lambda c: c.instance)
    other_rt = Runtime(other, w.store, w.clock)
    w.clock.advance(60)

    other_rt.run_once()  # its timers stage fires Counter's timer

    [queued] = inbox(w.store)
    assert queued.pending() == ("i1", "timer", TIMER, 0, 0, None, None)
    assert instance(w.store, "i1") == ("active", [1], 1)
    w.rt.run_until_idle()
    assert instance(w.store, "i1") == ("active", [1, TIMER], 2)
    assert notes(w.store, "i1") == [1, TIMER]
