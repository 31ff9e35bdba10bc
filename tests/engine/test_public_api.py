"""Public API found missing by writing a second domain on the engine: the step's log position,
timer names as `match` value patterns, ProcessScenario assertions, dispatched and awaiting
apart in batch progress, and rewinding a log consumer."""

from __future__ import annotations

import time
from datetime import timedelta
from enum import StrEnum
from typing import Any

import msgspec
import pytest

from procession import (
    Event,
    EventInfo,
    MessageRegistry,
    ProcessionError,
    ProcessManager,
    Projection,
    RetryPolicy,
    Route,
    Runtime,
    Schedule,
    Session,
    StepContext,
    TimerFired,
    VirtualClock,
    open_store,
    start,
)
from procession.runtime import operations
from procession.store.work import instances
from procession.testing import ProcessScenario
from tests.cli.test_procession_cli import one_json, procession
from tests.engine.test_failures import Fragile
from tests.support.toy import AccountOpened, OpenAccount, ReviewGroup, build_app


class Opened(Event, frozen=True, kw_only=True):
    account_id: str


class Alarm(StrEnum):
    WAKE = "wake-up"
    GIVE_UP = "give-up"


class Seen(msgspec.Struct):
    positions: list[int] = msgspec.field(default_factory=list)
    woke: int = 0


class Sleeper(ProcessManager[Seen]):
    """Declared by annotation only: `interested_in` is derived from `event: Opened`."""

    name = "Sleeper"
    state_type = Seen

    def initial(self) -> Seen:
        return Seen()

    def interested(self, event: Opened) -> Route | None:
        return start(event.account_id)

    def handle(self, state: Seen, message: Any, ctx: StepContext) -> list[Any]:
        match message:
            case Opened():
                return [
                    Schedule(Alarm.WAKE, after=timedelta(hours=1)),
                    Schedule(Alarm.GIVE_UP, after=timedelta(days=2)),
                ]
            case TimerFired(name=Alarm.WAKE):  # a value pattern: a bare constant would capture
                return []
        return []

    def evolve(self, state: Seen, message: Any) -> Seen:
        match message:
            case TimerFired(name=Alarm.WAKE):
                return Seen(state.positions, state.woke + 1)
        return state


class PositionSleeper(Sleeper):
    name = "PositionSleeper"

    def handle(self, state: Seen, message: Any, ctx: StepContext) -> list[Any]:
        return []

    def evolve(self, state: Seen, message: Any) -> Seen:
        return state


def test_timers_named_by_a_strenum_match_as_value_patterns_and_scenarios_assert_them() -> None:
    sleeper = Sleeper()
    with ProcessScenario(sleeper) as scenario:
        scenario.given(Opened(account_id="a"))
        assert sleeper.interested_in == (Opened,)
        scenario.then_status("a", "active").then_timers(
            "a", {Alarm.WAKE: timedelta(hours=1), Alarm.GIVE_UP: timedelta(days=2)}
        )
        scenario.advance(hours=2).then_timers("a", {Alarm.GIVE_UP: timedelta(days=2, hours=-2)})
        assert scenario.state("a").woke == 1
        scenario.then_status("never-seen", None)
        with pytest.raises(AssertionError, match="expected timers"):
            scenario.then_no_timers("a")


class PositionLog(ProcessManager[list[int]]):
    name = "PositionLog"

    def initial(self) -> list[int]:
        return []

    def interested(self, event: AccountOpened) -> Route | None:
        return start("all")

    def evolve(self, state: list[int], message: Any) -> list[int]:
        return state

    def handle(self, state: list[int], message: Any, ctx: StepContext) -> list[Any]:
        assert isinstance(ctx.position, int)
        SEEN.append(ctx.position)
        return []


SEEN: list[int] = []


def test_a_step_knows_the_log_position_of_its_event(store_url: str) -> None:
    SEEN.clear()
    app = build_app()
    app.process(PositionLog())
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        for account in ("a", "b"):
            rt.send(OpenAccount(account_id=account, group="g"))
        rt.run_until_idle()
        opened = [e.position for e in store.read_all() if e.type == "AccountOpened"]
    assert opened == SEEN and len(opened) == 2


def test_progress_shows_dispatched_and_awaiting_apart(store_url: str) -> None:
    with open_store(store_url) as store:
        rt = Runtime(build_app(), store, VirtualClock())
        rt.send_many([OpenAccount(account_id=f"a{i:03}", group="g") for i in range(120)])
        rt.send(ReviewGroup(group="g"))
        for _ in range(6):  # everything but the command stage: items are dispatched only
            rt.run_once_stages({"projection:accounts_by_group", "router", "processes", "batches"})
        before = rt.progress("review-g-1")
        rt.run_once_stages({"commands"})
        after = rt.progress("review-g-1")
    assert before is not None and after is not None
    assert (before.dispatched, before.awaiting, before.pending) == (50, 0, 70)  # max_in_flight
    assert before.in_flight == before.dispatched + before.awaiting
    assert (after.dispatched, after.awaiting) == (0, 50)


class Applied(Projection):
    """Appends a row per event applied, so a replay shows."""

    name = "applied"

    def __init__(self) -> None:
        super().__init__()
        self.on(AccountOpened, self.opened)

    def setup(self, session: Session) -> None:
        session.sql("CREATE TABLE IF NOT EXISTS applied (position BIGINT NOT NULL)")

    def opened(self, session: Session, event: AccountOpened, info: EventInfo) -> None:
        session.write("INSERT INTO applied (position) VALUES (:p)", {"p": info.position})


def test_rewinding_replays_a_projection_and_the_router_harmlessly(store_url: str) -> None:
    app = build_app()
    app.projection(Applied())
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        rt.send_many([OpenAccount(account_id=f"a{i}", group="g") for i in range(3)])
        rt.send(ReviewGroup(group="g"))
        rt.run_until_idle()
        head = store.head_position()
        assert rt.rewind("applied", 0) == head
        assert rt.rewind("router", 0) == head
        rt.run_until_idle()
        assert store.head_position() == head, "a re-routed event acted twice"
        with store.session() as session:
            assert session.sql("SELECT COUNT(*) FROM applied") == [(6,)]
        assert rt.checkpoints()["projection:applied"] == head
        with pytest.raises(ProcessionError, match="no log consumer 'nope'"):
            rt.rewind("nope", 0)
        with pytest.raises(ProcessionError, match="beyond the log's head"):
            rt.rewind("router", head + 1)


def test_procession_rewind_from_the_shell(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    with open_store(url) as store:
        rt = Runtime(build_app(), store, VirtualClock())
        rt.send(OpenAccount(account_id="a", group="g"))
        rt.run_until_idle()
    code, out, _ = procession("rewind", "router", "0", "--db", url, "--json")
    assert code == 0 and one_json(out) == {"consumer": "router", "from": 1, "to": 0}
    code, out, _ = procession("rewind", "router", "99", "--db", url, "--json")
    assert code == 2 and "beyond the log's head (1)" in str(one_json(out)["error"])
    code, out, _ = procession("rewind", "projection:nope", "0", "--db", url, "--json")
    assert code == 2 and "no log consumer" in str(one_json(out)["error"])


class Boom(Exception):
    pass


def test_a_nested_transaction_joins_the_open_one_on_every_backend(store_url: str) -> None:
    with open_store(store_url) as store:
        with store.session(write=True) as session:
            session.sql("CREATE TABLE IF NOT EXISTS nest (k TEXT PRIMARY KEY)")
        with pytest.raises(Boom), store.transaction() as outer:
            outer.sql("INSERT INTO nest (k) VALUES ('outer')")
            with store.transaction() as inner:
                assert inner.sql("SELECT k FROM nest") == [("outer",)]  # sees the outer write
                inner.sql("INSERT INTO nest (k) VALUES ('inner')")
            raise Boom  # the outer transaction rolls back: the inner write with it
        with store.session() as session:
            assert session.sql("SELECT k FROM nest") == []


def test_the_runtime_leaves_the_store_it_is_given_as_it_was(store_url: str) -> None:
    registry = MessageRegistry()
    registry.register(Opened)
    with open_store(store_url, registry) as store:
        assert store.clock_kind == "system"
        Runtime(build_app(), store, VirtualClock(store=store))
        assert store.registry is registry
        assert store.clock_kind == "virtual"  # a durable virtual clock is the store's own


def test_operator_actions_use_the_stores_own_virtual_time(store_url: str) -> None:
    app = build_app()
    fragile = Fragile()
    fragile.retry_policy = RetryPolicy(max_attempts=1)
    app.process(fragile)
    with open_store(store_url) as store:
        clock = VirtualClock(store=store)
        rt = Runtime(app, store, clock)
        rt.send(OpenAccount(account_id="bad-1", group="g"))
        rt.run_until_idle()
        assert store.now() == clock.now() != pytest.approx(time.time(), abs=86400)
        [item] = operations.parked(store)
        assert operations.retry(store, item["id"])
        with store.transaction() as tx:
            [delivery] = [
                d
                for deliveries in instances.deliveries_of(tx, [("Fragile", "bad-1")]).values()
                for d in deliveries
            ]
        assert delivery.available_at == clock.now()  # due at once, in the store's time
