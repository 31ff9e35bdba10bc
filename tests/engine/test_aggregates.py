"""Aggregates: snapshots, and strict process routing that fails loudly."""

from __future__ import annotations

from typing import Any

import pytest

from procession import (
    Aggregate,
    App,
    Message,
    ProcessManager,
    RetryPolicy,
    Route,
    Runtime,
    StepContext,
    VirtualClock,
    start,
)
from procession.runtime import operations
from procession.runtime.commands import HandlerRun
from tests.engine.conftest import OpenStores
from tests.support.toy import (
    AccountClosed,
    AccountFrozen,
    AccountOpened,
    AccountState,
    AccountThawed,
    Close,
    Freeze,
    OpenAccount,
    Thaw,
    build_app,
    decide,
    evolve,
)

Snapshotted = Aggregate("Account", AccountState(), evolve, decide, snapshot_every=2)


def snapshot_app() -> App:
    app = App("snapshots")
    app.register(AccountOpened, AccountFrozen, AccountThawed, AccountClosed)
    for command in (OpenAccount, Freeze, Thaw, Close):
        app.command(command, Snapshotted, to=lambda c: c.account_id)
    return app


def test_snapshots_are_written_every_n_events_and_loading_uses_them(
    store_url: str, open_stores: OpenStores
) -> None:
    store = open_stores(store_url)
    rt = Runtime(snapshot_app(), store, VirtualClock())
    rt.send(OpenAccount(account_id="s", group="g"))
    rt.send(Freeze(account_id="s", reason="one"))
    rt.send(Thaw(account_id="s"))
    with rt.store.transaction() as tx:
        assert tx.sql("SELECT stream_id, version FROM snapshots") == [("Account-s", 2)]
        # prove the snapshot is read: doctor it, and the loaded state follows it
        tx.sql(
            "UPDATE snapshots SET state = :s WHERE stream_id = 'Account-s'",
            {"s": '{"status":"closed","group":"from-snapshot"}'},
        )
        state, version = HandlerRun(tx, 0.0, {}).load(Snapshotted, "s")
    assert version == 3
    assert state.group == "from-snapshot", "events after the snapshot were folded onto it"
    assert state.status == "open"


class StrictStart(ProcessManager[dict[str, Any]]):
    name = "StrictStart"
    interested_in = (AccountOpened, AccountClosed)

    def initial(self) -> dict[str, Any]:
        return {}

    def interested(self, event: Message) -> Route | None:
        if isinstance(event, AccountOpened):
            return start(event.account_id, strict=True)
        assert isinstance(event, AccountClosed)
        return Route("continue!", (event.account_id,))

    def handle(self, state: dict[str, Any], message: Message, ctx: StepContext) -> list[Any]:
        return []


@pytest.mark.parametrize("kind", ["start!", "continue!"])
def test_strict_routing_fails_loudly_and_parks(
    store_url: str, kind: str, open_stores: OpenStores
) -> None:
    app = build_app()
    process = StrictStart()
    process.retry_policy = RetryPolicy(max_attempts=1)
    app.process(process)
    store = open_stores(store_url)
    rt = Runtime(app, store, VirtualClock())
    if kind == "start!":  # a second start of a running instance
        rt.send(OpenAccount(account_id="x", group="g"))
        rt.run_until_idle()
        with store.transaction() as tx:  # the same event again, as if re-published
            tx.set_checkpoint("router", 0)
            tx.sql("UPDATE process_instances SET last_position = 0 WHERE process = 'StrictStart'")
    else:  # a continue of an instance that never started
        rt.send(OpenAccount(account_id="x", group="g"))
        with store.transaction() as tx:
            tx.sql("DELETE FROM inbox")
            tx.set_checkpoint("router", store.head_position())
        rt.send(Close(account_id="x"))
    rt.run_until_idle()
    [parked] = operations.parked(store)
    expected = "is already running" if kind == "start!" else "is not running"
    assert parked["process"] == "StrictStart" and expected in parked["error"]
