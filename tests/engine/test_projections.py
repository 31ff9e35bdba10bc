"""Projections: exactly once under faults, rebuild equals catch-up, the position fence."""

from __future__ import annotations

import pytest

from procession import Runtime, VirtualClock, open_store
from tests.engine.test_processing import setup_group
from tests.support.faults import Crash, FaultInjector
from tests.support.toy import Close, build_app


def rows(store) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    with store.transaction() as tx:
        return sorted(tx.sql("SELECT account_id, grp, status FROM toy_accounts"))


def only_projection(rt: Runtime) -> int:
    return rt.run_once_stages({"projection:accounts_by_group"})


@pytest.mark.parametrize("crash_at", range(1, 12))
def test_a_fault_between_any_two_statements_applies_each_event_once(
    store_url: str, crash_at: int
) -> None:
    store = open_store(store_url)
    rt = Runtime(build_app(), store, VirtualClock())
    ids = setup_group(rt, 4)
    rt.send(Close(account_id=ids[1]))
    injector = FaultInjector(store, crash_at)
    with pytest.raises(Crash):
        while only_projection(rt):
            pass
    injector.remove()
    while only_projection(rt):  # restart
        pass
    assert rows(store) == [
        (ids[0], "g1", "open"),
        (ids[1], "g1", "closed"),
        (ids[2], "g1", "open"),
        (ids[3], "g1", "open"),
    ]


def test_rebuild_gives_the_same_rows_as_catch_up(store_url: str) -> None:
    store = open_store(store_url)
    rt = Runtime(build_app(), store, VirtualClock())
    ids = setup_group(rt, 30)
    for account in ids[::3]:
        rt.send(Close(account_id=account))
    rt.run_until_idle()
    before = rows(store)
    assert rt.rebuild("accounts_by_group") == store.head_position()
    assert rows(store) == before


def test_wait_for_brings_read_models_to_a_position(store_url: str) -> None:
    store = open_store(store_url)
    rt = Runtime(build_app(), store, VirtualClock())
    setup_group(rt, 3)
    result = rt.send(Close(account_id="g1-a0001"))
    assert rows(store) == []
    rt.wait_for(result.position)
    assert ("g1-a0001", "g1", "closed") in rows(store)
    assert rt.checkpoints()["projection:accounts_by_group"] >= result.position
