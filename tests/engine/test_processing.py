"""Process managers, timers and batches on both backends, through the real runtime."""

from __future__ import annotations

import json
from typing import Any

import pytest

from procession import (
    CommandRejected,
    ProcessionError,
    Runtime,
    Store,
    open_store,
)
from procession.ids import derived_id
from procession.process.batch import completion_due
from tests.engine.conftest import MakeRuntime
from tests.support.toy import (
    Close,
    Freeze,
    OpenAccount,
    ReviewGroup,
)

DAY = 86400.0


def setup_group(rt: Runtime, n: int, group: str = "g1") -> list[str]:
    ids = [f"{group}-a{i:04}" for i in range(n)]
    for account_id in ids:
        rt.send(OpenAccount(account_id=account_id, group=group))
    return ids


def events_of(store: Store, type_: str) -> list[Any]:
    return [e for e in store.read_all() if e.type == type_]


def instances(store: Store, process: str) -> dict[str, tuple[str, str | None, int]]:
    with store.transaction() as tx:
        rows = tx.sql(
            "SELECT instance_id, status, state, version FROM process_instances WHERE process = :p",
            {"p": process},
        )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_batch_over_a_group_runs_every_item_to_its_outcome(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, clock, rt = make_runtime(store_url)
    ids = setup_group(rt, 12)
    rt.send(Close(account_id=ids[3]))
    rt.send(ReviewGroup(group="g1"))
    start = clock.now()
    rt.run_until_idle()

    progress = rt.progress("review-g1-1")
    assert progress is not None
    assert (progress.status, progress.total) == ("completed", 12)
    assert (progress.done, progress.skipped, progress.failed) == (11, 1, 0)
    assert len(events_of(store, "AccountFrozen")) == 11
    thawed = events_of(store, "AccountThawed")
    assert len(thawed) == 11
    # thawed three days of process time after the freeze, whatever the scheduling
    for event in thawed:
        assert event.metadata["occurred_at"] >= _iso(start + 3 * DAY)
    watches = instances(store, "FreezeWatch")
    # every watch that started is done; the closed account's close never started one
    assert {s for s, _, _ in watches.values()} == {"done", "new"}
    assert [i for i, (s, state, _) in watches.items() if s == "new"] == [ids[3]]
    watches = {i: w for i, w in watches.items() if w[0] == "done"}
    assert all(state and '"reminders":2' in state for _, state, _ in watches.values())
    review = instances(store, "GroupReview")["g1"]
    assert review[0] == "done" and '"done":11' in (review[1] or "")


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat()


def test_targets_born_after_the_fence_are_not_included(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    setup_group(rt, 5)
    rt.send(ReviewGroup(group="g1"))
    late = [f"late-{i}" for i in range(3)]
    for account_id in late:  # opened after the trigger, before the batch enumerates
        rt.send(OpenAccount(account_id=account_id, group="g1"))
    rt.run_until_idle()
    progress = rt.progress("review-g1-1")
    assert progress is not None and progress.total == 5
    frozen = {e.data["account_id"] for e in events_of(store, "AccountFrozen")}
    assert frozen.isdisjoint(late) and len(frozen) == 5


def test_a_group_without_targets_completes_at_once(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    rt.send(ReviewGroup(group="empty"))
    rt.run_until_idle()
    progress = rt.progress("review-empty-1")
    assert progress is not None and (progress.status, progress.total) == ("completed", 0)
    assert instances(store, "GroupReview")["empty"][0] == "done"


def test_resent_command_returns_the_original_result_and_appends_nothing(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    first = rt.send(OpenAccount(account_id="x", group="g", command_id="cmd-1"))
    head = store.head_position()
    again = rt.send(OpenAccount(account_id="x", group="g", command_id="cmd-1"))
    assert (again.events, again.streams, again.position) == (1, ["Account-x"], first.position)
    assert again.duplicate and not first.duplicate
    assert store.head_position() == head


def test_rejected_command_is_an_error_and_stores_nothing(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    rt.send(OpenAccount(account_id="x", group="g"))
    head = store.head_position()
    with pytest.raises(CommandRejected, match="already exists"):
        rt.send(OpenAccount(account_id="x", group="g"))
    with pytest.raises(CommandRejected, match="does not exist"):
        rt.send(Freeze(account_id="nobody", reason="r"))
    assert store.head_position() == head
    with store.transaction() as tx:
        assert tx.sql("SELECT COUNT(*) FROM commands")[0][0] == 1


def test_correlation_and_causation_flow_from_batch_to_every_message(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    setup_group(rt, 2)
    rt.send(ReviewGroup(group="g1"))
    rt.run_until_idle()
    with store.transaction() as tx:
        commands = {
            cid: (t, meta)
            for cid, t, meta in tx.sql("SELECT command_id, type, metadata FROM commands")
        }
    for event in events_of(store, "AccountFrozen"):
        assert event.metadata["correlation_id"] == "review-g1-1"
        cause = event.metadata["causation_id"]
        assert cause in commands, "every event names the command that caused it"
    # the watches' thaws ran inside their steps (no outbox row): each thaw event names the
    # command the step sent, whose id derives from the watch, its thaw timer and the freeze
    frozen = {e.stream_id: e.metadata["message_id"] for e in events_of(store, "AccountFrozen")}
    thaws = events_of(store, "AccountThawed")
    assert len(thaws) == 2
    for event in thaws:
        assert event.metadata["correlation_id"] == "review-g1-1"
        account = event.stream_id.removeprefix("Account-")
        timer = derived_id("timer", "FreezeWatch", account, "thaw", frozen[event.stream_id])
        command_id = derived_id("FreezeWatch", account, timer, 0)
        assert event.metadata["causation_id"] == command_id, "names the command that caused it"
        assert command_id not in commands


def test_redelivery_of_every_event_and_timer_changes_nothing(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    setup_group(rt, 4)
    rt.send(ReviewGroup(group="g1"))
    rt.run_until_idle()
    before = snapshot(store)
    with store.transaction() as tx:  # the router forgets everything: all events re-routed
        tx.set_checkpoint("router", 0)
    rt.run_until_idle()
    assert snapshot(store) == before


def snapshot(store: Store) -> dict[str, Any]:
    """Everything observable, without ids and times that differ between runs."""
    with store.transaction() as tx:
        return {
            "log": [(e.stream_id, e.version, e.type, _stable(e.data)) for e in store.read_all()],
            "instances": sorted(
                tx.sql("SELECT process, instance_id, status, state, version FROM process_instances")
            ),
            "commands": sorted(
                (t, _stable(_without_id(d)), s)
                for t, d, s in tx.sql("SELECT type, data, status FROM commands")
            ),
            "items": sorted(tx.sql("SELECT batch_id, target_id, status FROM batch_items")),
            "batches": sorted(tx.sql("SELECT batch_id, status, total FROM batches")),
            "timers": sorted(tx.sql("SELECT process, instance_id, name FROM timers")),
            "inbox": tx.sql("SELECT COUNT(*) FROM inbox")[0][0],
        }


def _without_id(data: str) -> dict[str, Any]:
    """Command ids derive from event ids, which are fresh in every run."""
    decoded: dict[str, Any] = json.loads(data)
    decoded.pop("command_id", None)
    return decoded


def _stable(data: dict[str, Any]) -> str:
    return repr(sorted(data.items()))


def test_completion_rule_needs_every_item_finished() -> None:
    assert completion_due("running", open_items=0)
    assert completion_due("cancelling", open_items=0)
    assert not completion_due("running", open_items=1)
    assert not completion_due("enumerating", open_items=0), "targets may still be unseen"
    assert not completion_due("completed", open_items=0), "completes once"


def test_unknown_store_scheme_is_a_clear_error() -> None:
    with pytest.raises(ProcessionError, match="unknown store URL scheme 'mysql'"):
        open_store("mysql://localhost/db")


def inbox_rows(store: Store) -> list[tuple[Any, ...]]:
    with store.transaction() as tx:
        return tx.sql(
            "SELECT process, instance_id, routing, type, schema_version, data, metadata,"
            " available_at FROM inbox ORDER BY id"
        )


def redeliver(store: Store, row: tuple[Any, ...]) -> None:
    with store.transaction() as tx:
        tx.sql(
            "INSERT INTO inbox (process, instance_id, routing, type, schema_version, data,"
            " metadata, available_at) VALUES (:p, :i, :r, :t, :v, :d, :m, :a)",
            dict(zip("pirtvdma", row, strict=True)),
        )


@pytest.mark.parametrize("kind", ["AccountFrozen", "TimerFired"])
def test_a_message_delivered_twice_is_handled_once(
    store_url: str, kind: str, make_runtime: MakeRuntime
) -> None:
    store, clock, rt = make_runtime(store_url)
    rt.send(OpenAccount(account_id="a", group="g"))
    rt.send(Freeze(account_id="a", reason="r"))
    rt.run_once_stages({"router"})
    if kind == "TimerFired":
        clock.advance(86400)  # the first reminder is due
        rt.run_once_stages({"processes", "timers"})
    [delivery] = [r for r in inbox_rows(store) if r[3] == kind]
    rt.run_once_stages({"processes"})
    before = instances(store, "FreezeWatch")["a"]
    redeliver(store, delivery)
    rt.run_once_stages({"processes"})
    assert inbox_rows(store) == [], "the duplicate was consumed"
    assert instances(store, "FreezeWatch")["a"] == before, "and changed nothing"


def test_send_many_is_all_or_nothing_and_idempotent(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    batch = [OpenAccount(account_id=f"m{i}", group="g", command_id=f"open-m{i}") for i in range(5)]
    results = rt.send_many(batch)
    assert [r.events for r in results] == [1] * 5
    assert {r.position for r in results} == {store.head_position()}
    again = rt.send_many(batch)
    assert all(r.duplicate for r in again) and store.head_position() == 5
    head = store.head_position()
    with pytest.raises(CommandRejected, match="already exists"):
        rt.send_many(
            [OpenAccount(account_id="fresh", group="g"), OpenAccount(account_id="m1", group="g")]
        )
    assert store.head_position() == head, "the whole batch was rolled back"
