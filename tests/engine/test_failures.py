"""Failure policy: retry with backoff, then park; the parked instance waits, others go on."""

from __future__ import annotations

from typing import Any

from procession import (
    Message,
    ProcessManager,
    RetryPolicy,
    Route,
    Runtime,
    StepContext,
    VirtualClock,
)
from procession.runtime import operations
from tests.engine.conftest import OpenStores
from tests.support.toy import AccountOpened, build_app


class Fragile(ProcessManager[dict[str, Any]]):
    """Fails on accounts whose id contains 'bad' while `broken` is set."""

    name = "Fragile"
    interested_in = (AccountOpened,)
    broken = True
    retry_policy = RetryPolicy(max_attempts=3)

    def initial(self) -> dict[str, Any]:
        return {"seen": 0}

    def interested(self, event: Message) -> Route | None:
        assert isinstance(event, AccountOpened)
        return Route("start", (event.account_id,))

    def handle(self, state: dict[str, Any], message: Message, ctx: StepContext) -> list[Any]:
        if self.broken and "bad" in ctx.instance_id:
            raise RuntimeError(f"cannot handle {ctx.instance_id}")
        return []

    def evolve(self, state: dict[str, Any], message: Message) -> dict[str, Any]:
        return {"seen": state["seen"] + 1}


def test_failing_step_is_retried_then_parked_while_others_go_on(
    store_url: str, open_stores: OpenStores
) -> None:
    app = build_app()
    fragile = Fragile()
    app.process(fragile)
    store = open_stores(store_url)
    clock = VirtualClock()
    rt = Runtime(app, store, clock)
    from tests.support.toy import OpenAccount

    for account in ("good-1", "bad-1", "good-2"):
        rt.send(OpenAccount(account_id=account, group="g"))
    start = clock.now()
    rt.run_until_idle()

    parked = operations.parked(store)
    assert [(p["instance_id"], p["attempts"]) for p in parked] == [("bad-1", 3)]
    assert "RuntimeError: cannot handle bad-1" in parked[0]["error"]
    assert clock.now() - start == 1 + 2, "backoff of 1 s then 2 s before parking"
    with store.transaction() as tx:
        states = dict(
            tx.sql("SELECT instance_id, status FROM process_instances WHERE process = 'Fragile'")
        )
    assert states == {"good-1": "active", "good-2": "active", "bad-1": "new"}

    # an operator fixes the cause and retries: the message runs, the instance resumes
    fragile.broken = False
    assert operations.retry(store, parked[0]["id"])
    rt.run_until_idle()
    assert operations.parked(store) == []
    with store.transaction() as tx:
        row = tx.sql("SELECT status, state FROM process_instances WHERE instance_id = 'bad-1'")
    assert row == [("active", '{"seen":1}')]


def test_skipping_a_parked_message_drops_it_and_releases_the_instance(
    store_url: str, open_stores: OpenStores
) -> None:
    app = build_app()
    app.process(Fragile())
    store = open_stores(store_url)
    rt = Runtime(app, store, VirtualClock())
    from tests.support.toy import OpenAccount

    rt.send(OpenAccount(account_id="bad-2", group="g"))
    rt.run_until_idle()
    [parked] = operations.parked(store)
    assert operations.skip(store, parked["id"])
    assert not operations.skip(store, parked["id"]), "skipping twice finds nothing"
    rt.run_until_idle()
    assert operations.parked(store) == []
    with store.transaction() as tx:
        assert tx.sql("SELECT COUNT(*) FROM inbox")[0][0] == 0
