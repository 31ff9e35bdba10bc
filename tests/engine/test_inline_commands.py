"""Commands a process step sends run inside the step's own transaction ("inline").

A step's command whose id the engine derives, of a type the app handles, runs in the
processes stage with the step that sent it: a success leaves no row in `commands` (its
events name it as their causation), a rejection leaves one 'rejected' row, any other
failure leaves one outbox row its `on_error` policy decides about and delays no other
command. A caller-chosen id, a type without a handler, or a runtime that skips the commands
stage keep the outbox. Every test runs on both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from procession import (
    Aggregate,
    App,
    Command,
    CommandRejected,
    Decision,
    Event,
    Failure,
    HandlerContext,
    Message,
    Park,
    ProcessManager,
    Route,
    Runtime,
    SkipMessage,
    StepContext,
    Store,
    VirtualClock,
    derived_id,
    start,
)
from procession.policy import OnError
from procession.runtime import operations
from tests.engine.conftest import OpenStores

# -- a small domain: kicks start a process that marks boxes ---------------------------------


class Kick(Command, frozen=True, kw_only=True):
    kick_id: str
    instance: str
    boxes: list[str]
    fixed_id: str = ""
    """Non-empty: the step gives each Mark the id `<fixed_id>-<box>` (caller-chosen)."""
    orphan: bool = False
    """The step sends Orphan (a type no handler takes) instead of Mark."""
    refuse: bool = False
    """The step also returns, after its commands, an effect the engine refuses (while
    `Switches.refuse_effect` is set)."""


class Kicked(Event, frozen=True, kw_only=True):
    kick_id: str
    instance: str
    boxes: list[str]
    fixed_id: str
    orphan: bool
    refuse: bool


class Mark(Command, frozen=True, kw_only=True):
    box_id: str
    note: str


class Orphan(Command, frozen=True, kw_only=True):
    box_id: str
    note: str


class Marked(Event, frozen=True, kw_only=True):
    box_id: str
    note: str


def kick_decide(state: int, command: Any) -> list[Event]:
    assert isinstance(command, Kick)
    fields = msgspec.structs.asdict(command)
    del fields["command_id"]
    return [Kicked(**fields)]


KickStream = Aggregate("Kick", 0, lambda s, e: s + 1, kick_decide)

LOCKED = "locked"
"""The box the domain refuses to mark."""


def box_decide(state: int, command: Any) -> list[Event]:
    assert isinstance(command, Mark)
    if command.box_id == LOCKED:
        raise CommandRejected(f"box {LOCKED} is locked")
    return [Marked(box_id=command.box_id, note=command.note)]


Box = Aggregate("Box", 0, lambda s, e: s + 1, box_decide)


@dataclass
class Switches:
    """What the test breaks, and mends, while the runtime runs."""

    down: set[str] = field(default_factory=set)
    """Boxes whose Mark handler raises a RuntimeError (not a rejection)."""
    refuse_effect: bool = True


class Marker(ProcessManager[list[str]]):
    """One instance per `Kicked.instance`: each kick marks its boxes, in order."""

    name = "Marker"
    interested_in = (Kicked,)

    def __init__(self, switches: Switches) -> None:
        self.switches = switches

    def initial(self) -> list[str]:
        return []

    def interested(self, event: Kicked) -> Route | None:
        return start(event.instance)

    def handle(self, state: list[str], message: Message, ctx: StepContext) -> list[Any]:
        assert isinstance(message, Kicked)
        kind = Orphan if message.orphan else Mark
        effects: list[Any] = [
            kind(
                box_id=box,
                note=message.kick_id,
                command_id=f"{message.fixed_id}-{box}" if message.fixed_id else "",
            )
            for box in message.boxes
        ]
        if message.refuse and self.switches.refuse_effect:
            effects.append("not an effect")  # the engine raises a ProcessError on it
        return effects

    def evolve(self, state: list[str], message: Message) -> list[str]:
        assert isinstance(message, Kicked)
        return [*state, message.kick_id]


def build_app(switches: Switches, routed: bool = False, on_error: OnError | None = None) -> App:
    """`routed`: Mark goes to the Box aggregate by id (its stream is preloaded); otherwise a
    custom handler runs it, which raises for the boxes in `switches.down`."""
    app = App("inline")
    app.register(Kicked, Marked, Orphan)
    app.command(Kick, KickStream, to=lambda c: c.kick_id)
    if routed:
        app.command(Mark, Box, to=lambda c: c.box_id, on_error=on_error)
    else:

        def mark(ctx: HandlerContext, command: Mark) -> None:
            if command.box_id in switches.down:
                raise RuntimeError(f"box {command.box_id} is down")
            ctx.execute(Box, command.box_id, command)

        app.aggregate(Box)
        app.command(Mark, handler=mark, on_error=on_error)
    app.process(Marker(switches))
    return app


# -- helpers -----------------------------------------------------------------------------------

Make = Callable[..., tuple[Store, VirtualClock, Runtime, Switches]]


@pytest.fixture
def make(store_url: str, open_stores: OpenStores) -> Make:
    """A runtime of the app above on a virtual clock over a fresh store (closed at the end)."""

    def make_(
        routed: bool = False, on_error: OnError | None = None, skip: frozenset[str] = frozenset()
    ) -> tuple[Store, VirtualClock, Runtime, Switches]:
        store = open_stores(store_url)
        clock = VirtualClock(store=store)
        switches = Switches()
        app = build_app(switches, routed=routed, on_error=on_error)
        return store, clock, Runtime(app, store, clock, skip=skip), switches

    return make_


def kick(rt: Runtime, kick_id: str, *boxes: str, instance: str = "i1", **options: Any) -> None:
    rt.send(Kick(kick_id=kick_id, instance=instance, boxes=list(boxes), **options))


def route_and_step(rt: Runtime) -> None:
    """Route what was sent to the instances' inboxes, then run the processes stage once:
    the commands stage does not run."""
    rt.run_once_stages({"router"})
    rt.run_once_stages({"processes"})


def sent_id(store: Store, kick_id: str, index: int, instance: str = "i1") -> str:
    """The id the engine derives for command `index` of the step that handled `kick_id`."""
    [message_id] = [
        e.metadata["message_id"]
        for e in store.read_all()
        if e.type == "Kicked" and e.data["kick_id"] == kick_id
    ]
    return derived_id("Marker", instance, message_id, index)


def marks(store: Store) -> list[tuple[str, str, str]]:
    """Every Marked event in log order: (box, note, causation id)."""
    return [
        (e.data["box_id"], e.data["note"], e.metadata["causation_id"])
        for e in store.read_all()
        if e.type == "Marked"
    ]


Row = tuple[Any, ...]


def outbox(store: Store) -> list[Row]:
    """The rows of the commands the process sent, in insertion order."""
    with store.transaction() as tx:
        return [
            tuple(r)
            for r in tx.sql(
                "SELECT command_id, type, status, attempts, error, first_failed_at, available_at"
                " FROM commands WHERE type <> 'Kick' ORDER BY seq"
            )
        ]


def inbox_count(store: Store) -> int:
    with store.transaction() as tx:
        return int(tx.sql("SELECT COUNT(*) FROM inbox")[0][0])


def instance(store: Store, instance_id: str = "i1") -> tuple[str, str | None, int]:
    with store.transaction() as tx:
        [row] = tx.sql(
            "SELECT status, state, version FROM process_instances"
            " WHERE process = 'Marker' AND instance_id = :i",
            {"i": instance_id},
        )
    return (row[0], row[1], int(row[2]))


# -- 1. a step's command runs in the step's transaction ----------------------------------------


@pytest.mark.parametrize("routed", [True, False], ids=["aggregate", "handler"])
def test_a_steps_command_appends_its_events_in_the_processes_stage_and_leaves_no_row(
    make: Make, routed: bool
) -> None:
    store, _, rt, _ = make(routed=routed)
    kick(rt, "k1", "b1", "b2")
    route_and_step(rt)

    first, second = sent_id(store, "k1", 0), sent_id(store, "k1", 1)
    assert marks(store) == [("b1", "k1", first), ("b2", "k1", second)]
    assert outbox(store) == [], "a command run inline leaves no outbox row"
    with store.transaction() as tx:
        known = {r[0] for r in tx.sql("SELECT command_id FROM commands")}
    assert first not in known and second not in known
    assert inbox_count(store) == 0, "the step's delivery is consumed"
    assert instance(store) == ("active", '["k1"]', 1)
    # the commands stage has nothing left to do, and a full run adds nothing
    assert rt.run_once_stages({"commands"}) == 0
    rt.run_until_idle()
    assert len(marks(store)) == 2
    assert outbox(store) == []


def test_the_causation_and_correlation_of_an_inline_commands_events(make: Make) -> None:
    store, _, rt, _ = make()
    kick(rt, "k1", "b1")
    route_and_step(rt)
    [kicked] = [e for e in store.read_all() if e.type == "Kicked"]
    [marked] = [e for e in store.read_all() if e.type == "Marked"]
    assert marked.metadata["causation_id"] == sent_id(store, "k1", 0)
    assert marked.metadata["correlation_id"] == kicked.metadata["correlation_id"]
    assert marked.metadata["message_id"] not in (kicked.metadata["message_id"], None)


# -- 2. what keeps the outbox: a caller-chosen id, a type without handler ------------------------


def test_a_caller_chosen_command_id_goes_to_the_outbox(make: Make) -> None:
    store, clock, rt, _ = make()
    kick(rt, "k1", "b1", "b2", fixed_id="mine")
    route_and_step(rt)

    assert marks(store) == [], "nothing ran in the processes stage"
    now = clock.now()
    assert outbox(store) == [
        ("mine-b1", "Mark", "pending", 0, None, None, now),
        ("mine-b2", "Mark", "pending", 0, None, None, now),
    ]
    assert inbox_count(store) == 0
    assert instance(store) == ("active", '["k1"]', 1)

    assert rt.run_once_stages({"commands"}) == 2
    assert marks(store) == [("b1", "k1", "mine-b1"), ("b2", "k1", "mine-b2")]
    assert [(r[0], r[2], r[3]) for r in outbox(store)] == [
        ("mine-b1", "done", 1),
        ("mine-b2", "done", 1),
    ]


def test_a_command_type_without_a_handler_goes_to_the_outbox(make: Make) -> None:
    store, _, rt, _ = make()
    kick(rt, "k1", "b1", orphan=True)
    route_and_step(rt)
    derived = sent_id(store, "k1", 0)
    assert [(r[0], r[1], r[2]) for r in outbox(store)] == [(derived, "Orphan", "pending")]
    rt.run_until_idle()  # the commands stage answers it: no handler for it
    [(command_id, _, status, _, error, _, _)] = outbox(store)
    assert (command_id, status) == (derived, "rejected")
    assert "no handler for command Orphan" in error
    assert marks(store) == []


# -- 3. a runtime that skips the commands stage keeps every command in the outbox ---------------


def test_a_runtime_skipping_the_commands_stage_runs_nothing_inline(
    make: Make, store_url: str, open_stores: OpenStores
) -> None:
    store, clock, rt, switches = make(skip=frozenset({"commands"}))
    kick(rt, "k1", "b1")
    route_and_step(rt)

    derived = sent_id(store, "k1", 0)
    assert outbox(store) == [(derived, "Mark", "pending", 0, None, None, clock.now())]
    assert marks(store) == []
    rt.run_until_idle()
    assert marks(store) == [], "no stage of this runtime runs commands"
    assert [r[2] for r in outbox(store)] == ["pending"]

    # a runtime that does run commands (another worker) executes it from the outbox
    worker = Runtime(build_app(switches), store, clock)
    worker.run_until_idle()
    assert marks(store) == [("b1", "k1", derived)]
    assert [(r[0], r[2], r[3]) for r in outbox(store)] == [(derived, "done", 1)]


# -- 4. a command the domain rejects: one 'rejected' row, the step commits ----------------------


@pytest.mark.parametrize("routed", [True, False], ids=["aggregate", "handler"])
def test_a_rejected_inline_command_leaves_one_rejected_row_and_the_step_commits(
    make: Make, routed: bool
) -> None:
    store, _, rt, _ = make(routed=routed)
    kick(rt, "k1", LOCKED, "b1")
    route_and_step(rt)

    rejected, after = sent_id(store, "k1", 0), sent_id(store, "k1", 1)
    [(command_id, type_, status, attempts, error, first_failed_at, _)] = outbox(store)
    assert (command_id, type_, status) == (rejected, "Mark", "rejected")
    assert error == f"box {LOCKED} is locked"
    assert attempts == 1 and first_failed_at is None, "a rejection is an answer, not a failure"
    # a rejection stops nothing: the instance's next command ran inline all the same
    assert marks(store) == [("b1", "k1", after)]
    assert instance(store) == ("active", '["k1"]', 1)
    assert inbox_count(store) == 0

    rt.run_until_idle()
    assert [r[2] for r in outbox(store)] == ["rejected"], "a rejected command is not retried"
    assert len(marks(store)) == 1


# -- 5. a handler that raises: one outbox row; no other command is held back -------------------


def test_a_failing_inline_command_goes_to_the_outbox_and_delays_no_other(
    make: Make,
) -> None:
    store, clock, rt, switches = make()
    switches.down = {"b1"}
    kick(rt, "k1", "b1", "b2")  # b1 fails; b2 (another aggregate) is sent after it
    kick(rt, "k2", "b4")  # a later step of the same instance, in the same stage
    kick(rt, "k3", "b3", instance="i2")  # another instance
    now = clock.now()
    route_and_step(rt)

    failed, second = sent_id(store, "k1", 0), sent_id(store, "k1", 1)
    later, other = sent_id(store, "k2", 0), sent_id(store, "k3", 0, instance="i2")
    rows = {r[0]: r[1:] for r in outbox(store)}
    # one failed attempt, retried after the default policy's first backoff (1 s)
    assert rows == {failed: ("Mark", "pending", 1, "RuntimeError: box b1 is down", now, now + 1.0)}
    # a failure stops one thing: the same step's next command, the instance's next step's,
    # and another instance's all ran, as they would in one batch claimed from the outbox
    assert sorted(marks(store)) == sorted(
        [("b2", "k1", second), ("b4", "k2", later), ("b3", "k3", other)]
    )
    # the steps committed all the same
    assert instance(store) == ("active", '["k1","k2"]', 2)
    assert instance(store, "i2") == ("active", '["k3"]', 1)
    assert inbox_count(store) == 0
    assert operations.parked(store) == []

    switches.down.clear()  # the cause is removed
    rt.run_until_idle()  # the virtual clock moves to the retry
    rows = {r[0]: r[1:] for r in outbox(store)}
    assert {cid: (row[1], row[2]) for cid, row in rows.items()} == {
        failed: ("done", 2),  # failed once inline, then ran from the outbox
    }
    done = marks(store)
    assert len(done) == 4, "each command appended its event exactly once"
    assert sorted((box, cause) for box, _, cause in done) == [
        ("b1", failed),
        ("b2", second),
        ("b3", other),
        ("b4", later),
    ]
    assert operations.parked(store) == []
    assert rt.quiescent()


# -- 6. the command type's on_error decides about an inline failure at once ---------------------


@pytest.mark.parametrize(
    ("decision", "status"),
    [(Park(), "parked"), (SkipMessage(), "skipped")],
    ids=["park", "skip"],
)
def test_an_inline_failure_is_decided_by_the_command_types_on_error(
    make: Make, decision: Decision, status: str
) -> None:
    failures: list[Failure] = []

    def on_error(failure: Failure) -> Decision:
        failures.append(failure)
        return decision

    store, clock, rt, switches = make(on_error=on_error)
    switches.down = {"b1"}
    kick(rt, "k1", "b1")
    now = clock.now()
    route_and_step(rt)

    failed = sent_id(store, "k1", 0)
    [(command_id, type_, got, attempts, error, first_failed_at, _)] = outbox(store)
    assert (command_id, type_, got, attempts) == (failed, "Mark", status, 1)
    assert (error, first_failed_at) == ("RuntimeError: box b1 is down", now)
    assert [(f.attempt, f.subject, f.first_failed_at) for f in failures] == [
        (1, "command:Mark", now)
    ]
    assert isinstance(failures[0].message, Mark) and failures[0].message.box_id == "b1"
    assert failures[0].message.command_id == failed
    assert instance(store) == ("active", '["k1"]', 1)
    assert inbox_count(store) == 0
    parked = [p["id"] for p in operations.parked(store) if p["kind"] == "command"]
    assert parked == ([failed] if status == "parked" else [])

    rt.run_until_idle()
    assert marks(store) == [], "decided for good: nothing retries it"
    assert [r[2] for r in outbox(store)] == [status]
    assert len(failures) == 1

    if status == "parked":  # an operator retries it once the cause is fixed
        switches.down.clear()
        assert operations.retry(store, failed)
        rt.run_until_idle()
        assert marks(store) == [("b1", "k1", failed)]
        assert [r[2] for r in outbox(store)] == ["done"]


def test_a_step_failing_after_it_returned_a_command_leaves_no_trace_of_it(make: Make) -> None:
    store, _, rt, switches = make()
    kick(rt, "k1", "b1")  # a step that succeeds, before the failing one (same instance, stage)
    kick(rt, "k2", "b2", "b3", refuse=True)  # returns its commands, then a refused effect
    route_and_step(rt)

    assert marks(store) == [("b1", "k1", sent_id(store, "k1", 0))], "only the good step's"
    assert outbox(store) == [], "no row for the failed step's commands"
    # the step is undone and parked (a ProcessError: the default policy parks it at once)
    assert instance(store) == ("active", '["k1"]', 1)
    [parked] = operations.parked(store)
    assert (parked["kind"], parked["process"], parked["instance_id"]) == (
        "delivery",
        "Marker",
        "i1",
    )
    assert "unknown effect 'not an effect'" in parked["error"]
    assert inbox_count(store) == 1

    rt.run_until_idle()
    assert len(marks(store)) == 1 and outbox(store) == []

    # mended and retried: the step runs again and its commands run once, inline
    switches.refuse_effect = False
    assert operations.retry(store, parked["id"])
    rt.run_until_idle()
    assert marks(store) == [
        ("b1", "k1", sent_id(store, "k1", 0)),
        ("b2", "k2", sent_id(store, "k2", 0)),
        ("b3", "k2", sent_id(store, "k2", 1)),
    ]
    assert outbox(store) == []
    assert instance(store) == ("active", '["k1","k2"]', 2)
    assert inbox_count(store) == 0
