"""Regressions for the failure modes a review of the engine found."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from procession import (
    CancelTimer,
    Limits,
    Message,
    ProcessManager,
    RetryPolicy,
    Route,
    Runtime,
    Schedule,
    StepContext,
    TimerFired,
    VirtualClock,
    start,
)
from procession.runtime import operations
from tests.engine.conftest import OpenStores
from tests.engine.test_processing import setup_group
from tests.support.toy import (
    Account,
    AccountFrozen,
    AccountOpened,
    Freeze,
    OpenAccount,
    ReviewGroup,
    Thaw,
    build_app,
)

DAY = 86400.0


class Picky(ProcessManager[dict[str, Any]]):
    """Fails on every message of accounts named bad-*; counts messages of the others."""

    name = "Picky"
    interested_in = (AccountOpened, AccountFrozen)
    retry_policy = RetryPolicy(max_attempts=1)

    def initial(self) -> dict[str, Any]:
        return {"n": 0}

    def interested(self, event: Message) -> Route | None:
        assert isinstance(event, AccountOpened | AccountFrozen)
        return start(event.account_id)

    def handle(self, state: dict[str, Any], message: Message, ctx: StepContext) -> list[Any]:
        if ctx.instance_id.startswith("bad"):
            raise RuntimeError("picky")
        return []

    def evolve(self, state: dict[str, Any], message: Message) -> dict[str, Any]:
        return {"n": state["n"] + 1}


def test_parked_instances_with_queued_messages_do_not_starve_the_others(
    store_url: str, open_stores: OpenStores
) -> None:
    app = build_app()
    app.process(Picky())
    store = open_stores(store_url)
    # a claim scans 8 deliveries: ten parked instances with trailing messages fill it
    rt = Runtime(app, store, VirtualClock(), limits=Limits(instances=1))
    for i in range(10):
        rt.send(OpenAccount(account_id=f"bad-{i}", group="x"))
        rt.send(Freeze(account_id=f"bad-{i}", reason="r"))
    rt.send(OpenAccount(account_id="good", group="x"))
    rt.run_until_idle()
    assert len(operations.parked(store)) == 10
    with store.transaction() as tx:
        assert tx.sql(
            "SELECT state FROM process_instances WHERE process = 'Picky' AND instance_id = 'good'"
        ) == [('{"n":1}',)]
    assert rt.quiescent(), "parked work waits for an operator; nothing else is left"


def test_skipping_a_parked_batch_command_lets_the_batch_complete(
    store_url: str, open_stores: OpenStores
) -> None:
    app = build_app()

    def freeze(ctx: Any, command: Freeze) -> None:
        if command.account_id.endswith("0001"):
            raise RuntimeError("the bank's API is down")
        ctx.execute(Account, command.account_id, command)

    app.command(Freeze, handler=freeze)
    store = open_stores(store_url)
    rt = Runtime(app, store, VirtualClock())
    setup_group(rt, 3)
    rt.send(ReviewGroup(group="g1"))
    rt.run_until_idle()  # retried with back-off, then parked
    [parked] = operations.parked(store)
    assert parked["kind"] == "command" and parked["attempts"] == 5
    progress = rt.progress("review-g1-1")
    assert progress is not None and progress.status == "running"
    assert operations.skip(store, parked["id"])
    rt.run_until_idle()
    progress = rt.progress("review-g1-1")
    assert progress is not None
    assert (progress.status, progress.done, progress.skipped) == ("completed", 2, 1)


class Cancels(ProcessManager[dict[str, Any]]):
    """Sets a timer when an account opens; cancels it when the account is frozen."""

    name = "Cancels"
    interested_in = (AccountOpened, AccountFrozen)

    def initial(self) -> dict[str, Any]:
        return {}

    def interested(self, event: Message) -> Route | None:
        assert isinstance(event, AccountOpened | AccountFrozen)
        return start(event.account_id)

    def handle(self, state: dict[str, Any], message: Message, ctx: StepContext) -> list[Any]:
        if isinstance(message, AccountOpened):
            return [Schedule("t", after=timedelta(days=1))]
        if isinstance(message, AccountFrozen):
            return [CancelTimer("t")]
        assert isinstance(message, TimerFired)
        return [Thaw(account_id=ctx.instance_id)]


def test_a_timer_cancelled_after_it_fired_but_before_it_was_handled_does_not_act(
    store_url: str,
    open_stores: OpenStores,
) -> None:
    app = build_app()
    app.process(Cancels())
    store = open_stores(store_url)
    clock = VirtualClock()
    rt = Runtime(app, store, clock, skip=frozenset({"commands"}))
    rt.send(OpenAccount(account_id="a", group="g"))
    rt.run_once_stages({"router", "processes"})  # the timer is set
    rt.send(Freeze(account_id="a", reason="r"))
    rt.run_once_stages({"router"})  # the freeze waits in the inbox ...
    clock.advance(DAY)
    rt.run_once_stages({"timers"})  # ... and the timer fires behind it
    rt.run_until_idle_no_advance()
    with store.transaction() as tx:
        sent = tx.sql("SELECT type FROM commands WHERE type = 'Thaw'")
        assert tx.sql("SELECT COUNT(*) FROM inbox")[0][0] == 0
    assert sent == [], "the cancelled timer's message was dropped"
