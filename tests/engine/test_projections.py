"""Projections: exactly once under faults, rebuild equals catch-up, the position fence."""

from __future__ import annotations

from procession import Runtime, VirtualClock, open_store
from tests.engine.conftest import OpenStores
from tests.engine.test_crashes import reset_pg
from tests.engine.test_processing import setup_group
from tests.support.faults import Crash, FaultInjector
from tests.support.toy import Close, build_app


def rows(store) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    with store.transaction() as tx:
        return sorted(tx.sql("SELECT account_id, grp, status FROM toy_accounts"))


def only_projection(rt: Runtime) -> int:
    return rt.run_once_stages({"projection:accounts_by_group"})


def project_with_crash(url: str, crash_at: int | None) -> tuple[list[tuple[str, str, str]], int]:
    store = open_store(url)
    rt = Runtime(build_app(), store, VirtualClock())
    ids = setup_group(rt, 4)
    rt.send(Close(account_id=ids[1]))
    injector = FaultInjector(store, crash_at)
    try:
        while only_projection(rt):
            pass
    except Crash:
        pass
    injector.remove()
    while only_projection(rt):  # restart
        pass
    result = rows(store)
    store.close()
    return result, injector.count


def test_a_fault_between_any_two_statements_applies_each_event_once(
    store_url: str, backend: str
) -> None:
    expected, statements = project_with_crash(store_url, None)
    assert expected == [
        ("g1-a0000", "g1", "open"),
        ("g1-a0001", "g1", "closed"),
        ("g1-a0002", "g1", "open"),
        ("g1-a0003", "g1", "open"),
    ]
    assert statements >= 4
    for k in range(1, statements + 1):
        if backend == "postgres":
            reset_pg(store_url)
        url = store_url.replace("store.db", f"store-{k}.db")
        assert project_with_crash(url, k)[0] == expected, f"crash at statement {k}"


def test_rebuild_gives_the_same_rows_as_catch_up(store_url: str, open_stores: OpenStores) -> None:
    store = open_stores(store_url)
    rt = Runtime(build_app(), store, VirtualClock())
    ids = setup_group(rt, 30)
    for account in ids[::3]:
        rt.send(Close(account_id=account))
    rt.run_until_idle()
    before = rows(store)
    assert rt.rebuild("accounts_by_group") == store.head_position()
    assert rows(store) == before


def test_wait_for_brings_read_models_to_a_position(store_url: str, open_stores: OpenStores) -> None:
    store = open_stores(store_url)
    rt = Runtime(build_app(), store, VirtualClock())
    setup_group(rt, 3)
    result = rt.send(Close(account_id="g1-a0001"))
    assert rows(store) == []
    rt.wait_for(result.position)
    assert ("g1-a0001", "g1", "closed") in rows(store)
    assert rt.checkpoints()["projection:accounts_by_group"] >= result.position
