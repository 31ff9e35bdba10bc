"""Batches: throttle, cancel, supersede, resumable enumeration, progress."""

from __future__ import annotations

import contextlib

from procession import App, CancelBatch, Runtime, StartBatch, VirtualClock
from procession.runtime.batches import Batch, BatchWorker, cancel
from procession.store.work import batches
from tests.engine.conftest import MakeRuntime, OpenStores
from tests.engine.test_processing import events_of, setup_group
from tests.support.toy import (
    AccountFrozen,
    AccountOpened,
    Freeze,
    OpenAccount,
    ReviewGroup,
    Thaw,
    build_app,
)


def item_statuses(store, batch_id: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with store.transaction() as tx:
        return dict(
            tx.sql(
                "SELECT status, COUNT(*) FROM batch_items WHERE batch_id = :b GROUP BY status",
                {"b": batch_id},
            )
        )


def test_throttle_never_dispatches_more_than_max_in_flight(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    setup_group(rt, 130)  # the toy review throttles at 50 in flight, pages of 100
    rt.send(ReviewGroup(group="g1"))
    highest = 0
    for _ in range(200):
        if not rt.run_once() and rt.next_due() is None:
            break
        highest = max(highest, item_statuses(store, "review-g1-1").get("dispatched", 0))
        due = rt.next_due()
        if due is not None and not item_statuses(store, "review-g1-1").get("pending"):
            rt.clock.advance_to(due)
    rt.run_until_idle()
    assert highest == 50, "the throttle is reached and never exceeded"
    assert item_statuses(store, "review-g1-1") == {"done": 130}


def test_enumeration_pages_resume_from_the_durable_cursor(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    setup_group(rt, 250)
    rt.send(ReviewGroup(group="g1"))
    # run only projections, router and steps: the batch is created, not yet enumerated
    for _ in range(5):
        rt.run_once_stages({"projection:accounts_by_group", "router", "processes"})
    worker = BatchWorker(rt.app)
    totals = []
    for _ in range(3):  # one page per transaction; a new worker each time, as after a crash
        with store.transaction() as tx:
            [row] = batches.active(tx)
            worker.enumerate(tx, Batch.of(row), rt.clock.now())
        worker = BatchWorker(rt.app)
        with store.transaction() as tx:
            totals.append(tx.sql("SELECT total, status FROM batches")[0])
    assert totals == [(100, "enumerating"), (200, "enumerating"), (250, "running")]
    with store.transaction() as tx:
        assert tx.sql("SELECT COUNT(DISTINCT target_id), COUNT(*) FROM batch_items") == [(250, 250)]


def test_cancel_stops_pending_items_and_lets_in_flight_ones_finish(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    setup_group(rt, 120)
    rt.send(ReviewGroup(group="g1"))
    # enumerate and dispatch the first 50, then cancel
    for _ in range(6):
        rt.run_once_stages({"projection:accounts_by_group", "router", "processes", "batches"})
    assert item_statuses(store, "review-g1-1").get("dispatched") == 50
    with store.transaction() as tx:
        cancel(tx, "review-g1-1", rt.clock.now())
    rt.run_until_idle()
    progress = rt.progress("review-g1-1")
    assert progress is not None
    assert progress.status == "cancelled"
    assert (progress.done, progress.cancelled) == (50, 70)
    assert len(events_of(store, "AccountFrozen")) == 50
    assert len(events_of(store, "AccountThawed")) == 50


def test_a_new_review_supersedes_the_running_one(store_url: str, make_runtime: MakeRuntime) -> None:
    store, _, rt = make_runtime(store_url)
    setup_group(rt, 120)
    rt.send(ReviewGroup(group="g1"))
    for _ in range(6):
        rt.run_once_stages({"projection:accounts_by_group", "router", "processes", "batches"})
    rt.send(ReviewGroup(group="g1"))  # review 2 supersedes review 1
    rt.run_until_idle()
    first, second = rt.progress("review-g1-1"), rt.progress("review-g1-2")
    assert first is not None and second is not None
    assert (first.status, first.superseded_by) == ("cancelled", "review-g1-2")
    assert first.done == 50 and first.cancelled == 70
    assert (second.status, second.total) == ("completed", 120)
    # no account frozen twice while frozen: the 50 already frozen were carried, not re-frozen
    frozen = [e.data["account_id"] for e in events_of(store, "AccountFrozen")]
    thawed = [e.data["account_id"] for e in events_of(store, "AccountThawed")]
    assert len(frozen) == len(set(frozen)) == 120
    assert sorted(thawed) == sorted(frozen)


def test_cancel_batch_effect_and_engine_message_types_are_public() -> None:
    spec = StartBatch(batch_id="b", source="s", template="t", fence=1)
    assert spec.max_in_flight == 1000 and spec.await_outcome is None  # as the template says
    app = App("defaults")
    app.batch_template("t", lambda target, params: Freeze(account_id=target, reason="r"))
    assert app.templates["t"].awaits_outcome  # and a template awaits outcomes by default
    assert CancelBatch("b").batch_id == "b"


def test_progress_reports_counts_rate_and_eta(store_url: str, open_stores: OpenStores) -> None:
    store = open_stores(store_url)
    clock = VirtualClock()
    rt = Runtime(build_app(), store, clock)
    setup_group(rt, 10)
    rt.send(ReviewGroup(group="g1"))
    rt.run_until_idle()
    progress = rt.progress("review-g1-1")
    assert progress is not None
    assert progress.total == progress.done == 10
    assert progress.rate > 0 and progress.eta_seconds is None
    assert rt.progress("no-such-batch") is None


def test_batches_lists_newest_first_with_their_owner(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    _store, _, rt = make_runtime(store_url)
    setup_group(rt, 3)
    rt.send(ReviewGroup(group="g1"))
    rt.run_until_idle()
    rt.send(ReviewGroup(group="g1"))
    rt.run_until_idle()
    listed = rt.batches()
    assert [b.batch_id for b in listed] == ["review-g1-2", "review-g1-1"]
    assert {(b.owner_process, b.owner_instance) for b in listed} == {("GroupReview", "g1")}
    assert all(b.status == "completed" and b.done == 3 for b in listed)


def test_batches_page_newest_first_on_a_cursor_that_holds_while_new_ones_start(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    _store, _, rt = make_runtime(store_url)
    setup_group(rt, 2)
    for _ in range(5):
        rt.send(ReviewGroup(group="g1"))
        rt.run_until_idle()
    newest_first = [f"review-g1-{n}" for n in (5, 4, 3, 2, 1)]
    assert [b.batch_id for b in rt.batches()] == newest_first
    first = [b.batch_id for b in rt.batches(limit=2)]
    assert first == newest_first[:2]
    rt.send(ReviewGroup(group="g1"))  # a new batch starts between two pages
    rt.run_until_idle()
    second = [b.batch_id for b in rt.batches(limit=2, after=first[-1])]
    third = [b.batch_id for b in rt.batches(limit=2, after=second[-1])]
    assert second + third == newest_first[2:]  # nothing seen twice, nothing skipped
    assert rt.batches(limit=2, after=third[-1]) == []
    assert [b.batch_id for b in rt.batches(limit=1)] == ["review-g1-6"]


def test_an_outcome_written_before_the_items_command_ran_does_not_finish_it(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    """An outcome event belongs to the item whose command ran before it was written. The
    router may route it later than that (it lags behind, on another worker, or the command
    ran in between): an awaiting item must not take an outcome older than its command."""
    _, _, rt = make_runtime(store_url)
    rt.send(OpenAccount(account_id="a", group="g"))
    rt.send(Freeze(account_id="a", reason="by hand"))
    rt.send(ReviewGroup(group="g"))
    # route the request, start the batch, enumerate and dispatch: the freeze waits in the
    # outbox
    for _ in range(3):
        rt.run_once_stages({"router", "projection:accounts_by_group", "processes", "batches"})
    progress = rt.progress("review-g-1")
    assert progress is not None and progress.dispatched == 1
    rt.send(Thaw(account_id="a"))  # an outcome of the target, written before the command ran
    rt.run_once_stages({"commands"})  # the batch's freeze runs: the item awaits its outcome
    progress = rt.progress("review-g-1")
    assert progress is not None and progress.awaiting == 1
    rt.run_once_stages({"router"})  # only now is the earlier thaw routed
    progress = rt.progress("review-g-1")
    assert progress is not None
    assert (progress.awaiting, progress.done) == (1, 0), "an older outcome finished the item"
    rt.run_until_idle()  # the watch thaws the account three days later: that one is its own
    progress = rt.progress("review-g-1")
    assert progress is not None and (progress.status, progress.done) == ("completed", 1)


def test_an_outcome_written_by_the_items_own_command_finishes_it(
    store_url: str, open_stores: OpenStores
) -> None:
    """A template whose command's own event is a declared outcome: the item awaits from
    just before that event, so the event finishes it."""
    app = build_app()
    app.batch_outcome(AccountFrozen, target=lambda e: e.account_id, outcome="done")
    store = open_stores(store_url)
    rt = Runtime(app, store, VirtualClock())
    for account in ("a", "b"):
        rt.send(OpenAccount(account_id=account, group="g"))
    rt.send(ReviewGroup(group="g"))
    rt.run_until_idle_no_advance()  # no clock move: the watches' thaws are days away
    progress = rt.progress("review-g-1")
    assert progress is not None
    assert (progress.status, progress.done, progress.awaiting) == ("completed", 2, 0)


def test_the_log_position_a_transaction_counts_leaves_out_appends_it_undid(
    store_url: str, open_stores: OpenStores
) -> None:
    store = open_stores(store_url, build_app().messages)
    with store.transaction() as tx:
        tx.append("Account-a", [AccountOpened(account_id="a", group="g")])
        assert tx.log_position() == tx.head_position()
        with contextlib.suppress(RuntimeError), tx.savepoint():
            tx.append("Account-b", [AccountOpened(account_id="b", group="g")])
            raise RuntimeError("the handler failed after its append")
        tx.append("Account-c", [AccountOpened(account_id="c", group="g")])
        counted, actual = tx.log_position(), tx.head_position()
    # never high (an outcome at the next position would be refused); PostgreSQL uses up the
    # undone append's position, SQLite gives it back
    assert counted <= actual
    if store.backend.name == "sqlite":
        assert counted == actual
