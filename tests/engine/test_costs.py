"""The cost model: what the store asked of the database, per stage (both backends)."""

from __future__ import annotations

from tests.engine.conftest import MakeRuntime
from tests.engine.test_processing import setup_group
from tests.support.toy import ReviewGroup


def test_every_stage_counts_what_it_asked_of_the_database(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    setup_group(rt, 5)
    counters = store.counters
    before = (counters.statements, counters.executions, counters.round_trips)
    writes_before = store.backend.row_writes()
    rt.send(ReviewGroup(group="g1"))
    stats = rt.run_until_idle()
    assert stats.work > 0
    costs = rt.costs
    assert set(costs) == {"log", "processes", "commands", "timers", "batches"}
    # an executemany of N rows is one driver call and N executions
    for cost in costs.values():
        assert cost.executions >= cost.statements >= cost.round_trips >= 0
    assert costs["log"].work > 0 and costs["batches"].work > 0
    for busy in ("log", "batches"):
        assert costs[busy].statements > 0 and costs[busy].executions > 0
        assert costs[busy].round_trips > 0 and costs[busy].seconds > 0
    # the stages' counts are part of the store's: the rest is the clock's moves and the send
    assert sum(c.statements for c in costs.values()) <= counters.statements - before[0]
    assert sum(c.executions for c in costs.values()) <= counters.executions - before[1]
    if store.backend.name == "sqlite":
        # SQLite counts row writes: every one the stages made, and the send's own
        staged = sum(c.row_writes or 0 for c in costs.values())
        total = (store.backend.row_writes() or 0) - (writes_before or 0)
        assert 0 < staged <= total
        assert all(c.row_writes is not None for c in costs.values())
    else:
        assert store.backend.row_writes() is None
        assert all(c.row_writes is None for c in costs.values())
