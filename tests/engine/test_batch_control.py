"""Batch control: pause, resume, cancel, throttle and rate-limit a running batch (issue 10).

Every test runs on SQLite and PostgreSQL. Dispatches are counted from the outside: after
each virtual instant, how many items have left `pending` (no other way out but cancelling).
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procession import (
    BatchNotFound,
    BatchRefused,
    NotFound,
    ProcessionError,
    RateLimit,
    Runtime,
    StartBatch,
    Store,
    VirtualClock,
    open_store,
)
from procession.runtime import batches as batch_rt
from procession.runtime.operations import (
    cancel_batch,
    pause_batch,
    resume_batch,
    throttle_batch,
)
from tests.engine.conftest import MakeRuntime, OpenStores
from tests.engine.test_processing import instances, setup_group
from tests.support.toy import GroupReview, ReviewGroup, build_app

BATCH = "review-g1-1"
SET_UP = {"projection:accounts_by_group", "router", "processes"}
"""The stages that start a batch without dispatching anything of it."""


def counts(store: Store, batch_id: str = BATCH) -> dict[str, int]:
    with store.transaction() as tx:
        rows = tx.sql(
            "SELECT status, COUNT(*) FROM batch_items WHERE batch_id = :b GROUP BY status",
            {"b": batch_id},
        )
    return {str(s): int(n) for s, n in rows}


def dispatched_ever(store: Store, batch_id: str = BATCH) -> int:
    found = counts(store, batch_id)
    return sum(found.values()) - found.get("pending", 0) - found.get("cancelled", 0)


def freezes(store: Store) -> int:
    with store.transaction() as tx:
        return int(tx.sql("SELECT COUNT(*) FROM commands WHERE type = 'Freeze'")[0][0])


def audit(url: str, batch_id: str = BATCH) -> list[Any]:
    """The control events of a batch, read as an auditor would: a plain store, no app."""
    with open_store(url) as store:
        return [e for e in store.read_all() if e.stream_id == f"procession.batch-{batch_id}"]


def completions(store: Store, group: str = "g1") -> list[dict[str, Any]]:
    """The BatchCompleted messages the starting process received (it keeps them)."""
    state = instances(store, "GroupReview")[group][1]
    assert state is not None
    completed: list[dict[str, Any]] = json.loads(state)["completed"]
    return completed


def started(rt: Runtime, n: int) -> None:
    """A review of `n` accounts: the batch exists and has dispatched nothing yet."""
    setup_group(rt, n)
    rt.send(ReviewGroup(group="g1"))
    for _ in range(4):
        rt.run_once_stages(SET_UP)
    progress = rt.progress(BATCH)
    assert progress is not None and progress.dispatched == 0


def batch_due(rt: Runtime) -> float | None:
    with rt.store.transaction(write=False) as tx:
        return batch_rt.next_due(tx, rt.clock.now())


def drive(rt: Runtime, batch_id: str, steps: int | None = None) -> list[tuple[float, int]]:
    """Run on virtual time until the batch has dispatched everything it will (or for
    `steps` instants): (instant, items dispatched at it). The clock moves to the next timer,
    retry or rate-limit window, whichever is first (`procession.runtime.batches.next_due`
    tells the last)."""
    dispatches, before = [], dispatched_ever(rt.store, batch_id)
    for _ in range(steps or 10_000):
        rt.run_until_idle_no_advance()
        now, total = rt.clock.now(), dispatched_ever(rt.store, batch_id)
        if total > before:
            dispatches.append((now, total - before))
        before = total
        if not counts(rt.store, batch_id).get("pending"):
            return dispatches
        dues = [d for d in (rt.next_due(), batch_due(rt)) if d is not None]
        assert dues, "pending items, and nothing will ever dispatch them"
        assert min(dues) > now
        rt.clock.advance_to(min(dues))
    assert steps is not None, "the batch did not finish dispatching"
    return dispatches


def most_in_any_window(dispatches: list[tuple[float, int]], per_seconds: float) -> int:
    """The most items dispatched in any half-open interval [t, t + per_seconds)."""
    return max(
        sum(n for when, n in dispatches if start <= when < start + per_seconds)
        for start, _ in dispatches
    )


class LimitedReview(GroupReview):
    """The toy review, its batch declaring a rate limit."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit

    def handle(self, state: Any, message: Any, ctx: Any) -> list[Any]:
        return [
            msgspec.structs.replace(e, rate_limit=self.limit) if isinstance(e, StartBatch) else e
            for e in super().handle(state, message, ctx)
        ]


def limited_runtime(store: Store, limit: RateLimit) -> Runtime:
    app = build_app()
    app.processes["GroupReview"] = LimitedReview(limit)
    return Runtime(app, store, VirtualClock(store=store))


# -- pause and resume -------------------------------------------------------------------------


def test_a_paused_batch_dispatches_nothing_until_resumed(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, clock, rt = make_runtime(store_url)
    setup_group(rt, 120)
    rt.send(ReviewGroup(group="g1"))
    for _ in range(6):  # enumerated, the first 50 dispatched (the toy throttles at 50)
        rt.run_once_stages(SET_UP | {"batches"})
    assert counts(store) == {"dispatched": 50, "pending": 70}
    progress = pause_batch(store, BATCH, by="cli:ops", reason="provider outage")
    assert (progress.status, progress.paused) == ("running", True)
    rt.run_until(clock.now() + 10 * 86400)  # ten days: the 50 run, await and thaw
    assert counts(store) == {"done": 50, "pending": 70}, "a paused batch dispatched"
    assert freezes(store) == 50
    progress = rt.progress(BATCH)
    assert progress is not None and (progress.status, progress.paused) == ("running", True)
    assert resume_batch(store, BATCH, by="cli:ops").paused is False
    rt.run_until_idle()
    assert counts(store) == {"done": 120}
    assert freezes(store) == 120
    assert [c["status"] for c in completions(store)] == ["completed"]


def test_a_batch_paused_before_it_enumerates_enumerates_but_sends_nothing(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    started(rt, 30)
    pause_batch(store, BATCH, by="test")
    rt.run_until_idle_no_advance()
    progress = rt.progress(BATCH)
    assert progress is not None
    assert (progress.status, progress.total, progress.pending) == ("running", 30, 30)
    assert freezes(store) == 0
    assert rt.quiescent(), "a paused batch's pending items are not work (they wait for us)"


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_leaves_every_item_final_and_the_parent_hears_once(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    setup_group(rt, 120)
    rt.send(ReviewGroup(group="g1"))
    for _ in range(6):
        rt.run_once_stages(SET_UP | {"batches"})
    rt.run_once_stages({"commands"})  # some dispatched items run: they await their thaw
    before = counts(store)
    assert before.get("awaiting", 0) + before.get("dispatched", 0) == 50
    progress = cancel_batch(store, BATCH, by="cli:ops", reason="wrong group")
    assert (progress.status, progress.cancelled) == ("cancelling", 70)
    assert cancel_batch(store, BATCH, by="cli:ops").status == "cancelling"  # a no-op
    rt.run_until_idle()
    assert counts(store) == {"done": 50, "cancelled": 70}, "started items were left to finish"
    progress = rt.progress(BATCH)
    assert progress is not None and progress.status == "cancelled"
    [completed] = completions(store)
    assert (completed["status"], completed["done"], completed["cancelled"]) == (
        "cancelled",
        50,
        70,
    )
    assert cancel_batch(store, BATCH, by="cli:ops").status == "cancelled"  # still a no-op
    assert [e.type for e in audit(store_url)] == ["BatchCancelRequested"]
    with pytest.raises(BatchRefused, match="cancelled"):
        resume_batch(store, BATCH, by="cli:ops")


def test_a_completed_batch_cannot_be_cancelled_paused_or_throttled(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    setup_group(rt, 3)
    rt.send(ReviewGroup(group="g1"))
    rt.run_until_idle()
    with pytest.raises(BatchRefused, match="completed"):
        cancel_batch(store, BATCH, by="t")
    with pytest.raises(BatchRefused, match="completed"):
        pause_batch(store, BATCH, by="t")
    with pytest.raises(BatchRefused, match="completed"):
        throttle_batch(store, BATCH, max_in_flight=5, by="t")
    assert audit(store_url) == []


# -- throttle ---------------------------------------------------------------------------------


def test_max_in_flight_changes_while_the_batch_runs(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    started(rt, 80)
    assert throttle_batch(store, BATCH, max_in_flight=10, by="t").max_in_flight == 10
    rt.run_once_stages({"batches"})
    rt.run_once_stages({"batches"})
    assert counts(store)["dispatched"] == 10
    throttle_batch(store, BATCH, max_in_flight=30, by="t")
    rt.run_once_stages({"batches"})
    assert counts(store)["dispatched"] == 30
    throttle_batch(store, BATCH, max_in_flight=5, by="t")  # below what is out: holds back
    rt.run_once_stages({"batches"})
    assert counts(store)["dispatched"] == 30
    rt.run_once_stages({"commands"})
    rt.run_once_stages({"batches"})
    assert counts(store)["dispatched"] == 5
    rt.run_until_idle()
    assert counts(store) == {"done": 80}


def test_a_declared_rate_limit_is_never_exceeded_across_windows_and_restarts(
    store_url: str, open_stores: OpenStores
) -> None:
    limit = RateLimit(7, 3600)
    store = open_stores(store_url)
    rt = limited_runtime(store, limit)
    setup_group(rt, 40)
    rt.send(ReviewGroup(group="g1"))
    for _ in range(4):
        rt.run_once_stages(SET_UP)
    assert (progress := rt.progress(BATCH)) is not None and progress.rate_limit == limit
    first = drive(rt, BATCH, steps=2)  # two windows, then the worker "crashes"
    rt = limited_runtime(open_stores(store_url), limit)  # a new process, same database
    dispatches = first + drive(rt, BATCH)
    assert sum(n for _, n in dispatches) == 40
    assert most_in_any_window(dispatches, limit.per_seconds) == 7
    assert len(dispatches) >= 6, "forty items at seven an hour take six windows"
    rt.run_until_idle()
    assert counts(rt.store) == {"done": 40}
    assert [c["status"] for c in completions(rt.store)] == ["completed"]


def test_a_rate_limit_set_at_run_time_applies_from_the_next_round_and_can_be_lifted(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    started(rt, 30)
    limit = RateLimit.parse("4/min")
    progress = throttle_batch(store, BATCH, rate_limit=limit, by="t")
    assert (progress.rate_limit, progress.max_in_flight) == (limit, 50)
    dispatches = drive(rt, BATCH, steps=3)
    assert [n for _, n in dispatches] == [4, 4, 4]
    assert throttle_batch(store, BATCH, unlimited=True, by="t").rate_limit is None
    rt.run_until_idle_no_advance()
    assert "pending" not in counts(store)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    items=st.integers(1, 6),
    per_seconds=st.sampled_from([1.0, 7.5, 60.0, 3600.0, 86400.0 * 2]),
    size=st.integers(1, 25),
    max_in_flight=st.integers(1, 30),
)
def test_for_any_rate_limit_and_batch_the_limit_holds_in_every_window(
    store_url: str,
    open_stores: OpenStores,
    items: int,
    per_seconds: float,
    size: int,
    max_in_flight: int,
) -> None:
    store = open_stores(store_url)
    rt = Runtime(build_app(), store, VirtualClock(store=store))
    group = f"g{len(rt.batches())}"  # one store for every example: a fresh group each
    setup_group(rt, size, group)
    rt.send(ReviewGroup(group=group))
    for _ in range(4):
        rt.run_once_stages(SET_UP)
    batch_id = f"review-{group}-1"
    limit = RateLimit(items, per_seconds)
    throttle_batch(store, batch_id, rate_limit=limit, max_in_flight=max_in_flight, by="h")
    dispatches = drive(rt, batch_id)
    assert sum(n for _, n in dispatches) == size
    assert most_in_any_window(dispatches, per_seconds) <= items


def test_two_workers_never_exceed_the_rate_limit_together(
    store_url: str, open_stores: OpenStores
) -> None:
    store = open_stores(store_url)
    rt = Runtime(build_app(), store, VirtualClock(store=store))
    started(rt, 60)
    throttle_batch(store, BATCH, rate_limit=RateLimit(9, 3600), by="t")
    workers = [rt, *(Runtime(build_app(), open_stores(store_url), rt.clock) for _ in range(2))]
    go = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def work(worker: Runtime) -> None:
        try:
            go.wait()
            for _ in range(10):
                worker.run_once_stages({"batches"})
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert counts(store) == {"dispatched": 9, "pending": 51}


# -- the audit ------------------------------------------------------------------------------


def test_each_change_appends_one_event_with_who_and_why(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    started(rt, 10)
    pause_batch(store, BATCH, by="cli:ann", reason="mail provider down")
    pause_batch(store, BATCH, by="cli:ann", reason="again")  # a no-op: recorded once
    resume_batch(store, BATCH, by="http:bob", reason="provider back")
    resume_batch(store, BATCH, by="http:bob")  # not paused: nothing
    throttle_batch(store, BATCH, max_in_flight=5, rate_limit=RateLimit(100, 3600), by="cli:ann")
    throttle_batch(store, BATCH, max_in_flight=5, by="cli:ann")  # the same settings: nothing
    cancel_batch(store, BATCH, by="cli:carl", reason="superseded by hand")
    events = audit(store_url)
    assert [(e.type, e.data["by"], e.data["reason"]) for e in events] == [
        ("BatchPaused", "cli:ann", "mail provider down"),
        ("BatchResumed", "http:bob", "provider back"),
        ("BatchThrottled", "cli:ann", ""),
        ("BatchCancelRequested", "cli:carl", "superseded by hand"),
    ]
    assert [e.version for e in events] == [1, 2, 3, 4]
    throttled = events[2].data
    assert throttled["max_in_flight"] == 5 and throttled["previous_max_in_flight"] == 50
    assert throttled["rate_limit"] == {"items": 100, "per_seconds": 3600.0}
    assert throttled["previous_rate_limit"] is None
    assert all(e.data["batch_id"] == BATCH for e in events)
    rt.run_until_idle()  # the router, projections and processes read past them unharmed
    assert rt.quiescent()
    progress = rt.progress(BATCH)
    assert progress is not None and progress.status == "cancelled"


def test_the_app_registry_knows_the_control_events(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    started(rt, 2)
    pause_batch(store, BATCH, by="t")
    [event] = audit(store_url)
    decoded = rt.app.messages.decode(event.type, event.schema_version, json.dumps(event.data))
    assert type(decoded).__name__ == "BatchPaused"


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    [
        pause_batch,
        resume_batch,
        cancel_batch,
        lambda s, b, by: throttle_batch(s, b, max_in_flight=1, by=by),
    ],
)
def test_an_unknown_batch_is_not_found(
    store_url: str, open_stores: OpenStores, operation: Any
) -> None:
    store = open_stores(store_url)
    with pytest.raises(BatchNotFound, match="no batch 'nope'") as raised:
        operation(store, "nope", by="t")
    assert isinstance(raised.value, NotFound)


def test_bad_throttles_are_refused_before_anything_changes(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    started(rt, 2)
    with pytest.raises(ProcessionError, match="give max_in_flight"):
        throttle_batch(store, BATCH, by="t")
    with pytest.raises(ProcessionError, match="at least 1"):
        throttle_batch(store, BATCH, max_in_flight=0, by="t")
    with pytest.raises(ProcessionError, match="not both"):
        throttle_batch(store, BATCH, rate_limit=RateLimit(1, 1), unlimited=True, by="t")
    with pytest.raises(ProcessionError, match="say who"):
        pause_batch(store, BATCH, by=" ")
    assert audit(store_url) == []


# -- pure rules -------------------------------------------------------------------------------


@given(
    first=st.floats(0, 4e9, allow_nan=False),
    per=st.floats(1e-3, 1e7, allow_nan=False),
)
def test_a_window_ends_when_its_first_item_no_longer_counts(first: float, per: float) -> None:
    """At `window_end(first, per)` the dispatch at `first` is out of the window (so a clock
    moved there can dispatch), and a moment before it is still in."""
    due = batch_rt.window_end(first, per)
    assert not first > due - per
    assert first > math.nextafter(due, -math.inf) - per or due - per == first


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("100/hour", RateLimit(100, 3600)),
        ("5/min", RateLimit(5, 60)),
        ("2/s", RateLimit(2, 1)),
        ("10/15min", RateLimit(10, 900)),
        (" 3 / 2 days ", RateLimit(3, 172800)),
    ],
)
def test_rates_parse(text: str, limit: RateLimit) -> None:
    assert RateLimit.parse(text) == limit


@pytest.mark.parametrize("text", ["", "5", "five/hour", "5/fortnight", "0/hour", "5/0s", "-1/s"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ProcessionError):
        RateLimit.parse(text)
