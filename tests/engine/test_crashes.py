"""A crash between any two statements, then a restart, ends as if nothing had happened."""

from __future__ import annotations

import pytest

from procession import Runtime, VirtualClock, open_store
from tests.engine.conftest import OpenStores
from tests.engine.test_processing import setup_group, snapshot
from tests.support.faults import Crash, FaultInjector
from tests.support.toy import ReviewGroup, build_app


def scenario(url: str, crash_at: int | None) -> tuple[dict[str, object], int, bool]:
    """Set up, trigger a batch and run to the end, crashing once at statement `crash_at`."""
    store = open_store(url)
    rt = Runtime(build_app(), store, VirtualClock(store=store))
    setup_group(rt, 3)
    rt.send(ReviewGroup(group="g1"))
    injector = FaultInjector(store, crash_at)
    crashed = False
    try:
        rt.run_until_idle()
    except Crash:
        crashed = True
    injector.remove()
    store.close()
    # restart: a new process opens the same store and carries on
    store = open_store(url)
    Runtime(build_app(), store, VirtualClock(store=store)).run_until_idle()
    result = snapshot(store)
    store.close()
    return result, injector.count, crashed


def fresh(url: str, n: int) -> str:
    if url.startswith("sqlite"):
        return url.replace("store.db", f"store-{n}.db")
    return url  # PostgreSQL: reset by dropping the tables below


def reset_pg(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()
        assert schema is not None
        conn.execute(f"DROP SCHEMA {schema[0]} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema[0]}")


def test_crash_at_every_statement_then_restart_matches_a_clean_run(
    store_url: str, backend: str
) -> None:
    clean, statements, _ = scenario(fresh(store_url, 0), None)
    assert statements > 50
    # every statement on SQLite; a spread of them on PostgreSQL (each run costs more there)
    stride = 1 if backend == "sqlite" else max(1, statements // 40)
    crashed_runs = 0
    for k in range(1, statements + 1, stride):
        if backend == "postgres":
            reset_pg(store_url)
        result, _, crashed = scenario(fresh(store_url, k), k)
        crashed_runs += crashed
        assert result == clean, f"crash at statement {k} changed the outcome"
    assert crashed_runs >= (statements // stride) - 1


@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_crash_during_a_command_send_leaves_no_trace(
    store_url: str, crash_at: int, open_stores: OpenStores
) -> None:
    store = open_stores(store_url)
    rt = Runtime(build_app(), store, VirtualClock())
    injector = FaultInjector(store, crash_at)
    with pytest.raises(Crash):
        setup_group(rt, 1)
    injector.remove()
    assert list(store.read_all()) == []
    setup_group(rt, 1)  # the same command, sent again, succeeds once
    assert [e.type for e in store.read_all()] == ["AccountOpened"]
