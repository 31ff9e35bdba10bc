"""The whole reference scenario, end to end: open N contracts, change the rating, run to the end.

    python bench/scenario.py                    # 10k, 100k, 1M on SQLite; 10k, 100k on PostgreSQL
    python bench/scenario.py --backend sqlite --sizes 10000

Each (backend, N) runs in a fresh child process (its own peak RSS). One customer holds all N
contracts; simulated customers re-sign late or never (seed 7, 10% never) on the virtual
clock, as in `make demo`. Set-up (registering and opening, bulk commands of 5,000 per
transaction) is timed apart from the run (the rating change until the batch completes and
nothing is left to do). Prints one JSON object on stdout, with the cost model of the run:
statements, executions, round trips and row writes per contract, in all and per stage
(`Runtime.costs`; statements outside the stages, such as a virtual clock's moves, count in
the totals only; row writes only where the backend counts them, i.e. SQLite).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import header, in_fresh_store, peak_rss_mb, run_child

CHUNK = 5000
DEFAULT = {"sqlite": [10_000, 100_000, 1_000_000], "postgres": [10_000, 100_000]}


def run_with_workers(runtime: Any, batch_id: str, workers: int) -> Any:
    """Spawn `workers` worker processes (`credit-contracts worker`, as `demo --workers`),
    wait until the batch has completed and nothing is left to do, stop them."""
    from credit_contracts.demo_run import Worker
    from procession import RunStats

    spawned = [Worker.spawn(runtime.store.url) for _ in range(workers)]
    try:
        while True:
            for worker in spawned:
                worker.check()
            progress = runtime.progress(batch_id)
            if progress is not None and progress.status == "completed" and runtime.quiescent():
                return RunStats()  # rounds are the workers': not counted here
            time.sleep(0.1)
    finally:
        for worker in spawned:
            worker.stop()
        for worker in spawned:
            worker.wait()


def child(url: str, n: int, workers: int = 0) -> dict[str, Any]:
    from credit_contracts.app import open_system
    from credit_contracts.domain.messages import (
        ChangeCustomerCreditRating,
        OpenContract,
        RegisterCustomer,
    )
    from credit_contracts.processes.credit_change import batch_id_for
    from credit_contracts.simulator import SimulationConfig

    runtime = open_system(url, SimulationConfig(seed=7, never_sign=0.1), virtual=True)
    started = time.perf_counter()
    runtime.send(RegisterCustomer(customer_id="bench", name="Bench Ltd", rating="AA"))
    for first in range(0, n, CHUNK):
        runtime.send_many(
            [
                OpenContract(contract_id=f"k{i:08d}", customer_id="bench", title="lease")
                for i in range(first, min(n, first + CHUNK))
            ]
        )
    runtime.run_until_idle()  # read models catch up with the set-up
    setup = time.perf_counter() - started
    head_before = runtime.store.head_position()
    rss_before = peak_rss_mb()

    counters = runtime.store.counters
    before = (counters.statements, counters.executions, counters.round_trips)
    writes_before = runtime.store.backend.row_writes()
    runtime.costs = {name: type(cost)() for name, cost in runtime.costs.items()}
    started = time.perf_counter()
    runtime.send(ChangeCustomerCreditRating(customer_id="bench", new_rating="B"))
    if workers:
        stats = run_with_workers(runtime, batch_id_for("bench", 1), workers)
    else:
        stats = runtime.run_until_idle()
    seconds = time.perf_counter() - started
    writes_after = runtime.store.backend.row_writes()
    progress = runtime.progress(batch_id_for("bench", 1))
    assert progress is not None and progress.status == "completed", progress
    events = runtime.store.head_position() - head_before
    return {
        "contracts": n,
        "workers": workers or "in process",
        "setup_seconds": round(setup, 2),
        "seconds": round(seconds, 2),
        "contracts_per_s": round(n / seconds),
        "events": events,
        "events_per_s": round(events / seconds),
        "reconfirmed": progress.done,
        "terminated": progress.failed,
        "skipped": progress.skipped,
        "rounds": stats.rounds,
        "clock_advances": stats.clock_advances,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_after_setup_mb": rss_before,
        "per_contract": per_contract(
            n,
            statements=counters.statements - before[0],
            executions=counters.executions - before[1],
            round_trips=counters.round_trips - before[2],
            row_writes=None if writes_after is None else writes_after - (writes_before or 0),
            events=events,
        ),
        "stages": {
            name: {"seconds": round(cost.seconds, 2)}
            | per_contract(
                n,
                work=cost.work,
                statements=cost.statements,
                executions=cost.executions,
                round_trips=cost.round_trips,
                row_writes=cost.row_writes,
            )
            for name, cost in runtime.costs.items()
        },
    }


def per_contract(n: int, **totals: int | None) -> dict[str, float | None]:
    """The cost model: each total divided by the contracts (None: not counted here)."""
    return {k: None if v is None else round(v / n, 2) for k, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sizes", help="comma-separated N (default: per backend)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="PostgreSQL: run with this many worker processes instead of in process",
    )
    parser.add_argument("--child", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, workers = int(args.sizes), args.workers
        result = in_fresh_store(args.child, "scenario", lambda url: child(url, n, workers))
        print(json.dumps(result))
        return
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    out = header("scenario")
    for backend in backends:
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else DEFAULT[backend]
        extra = ["--workers", str(args.workers)] if args.workers else []
        out[backend] = {
            str(n): run_child(__file__, backend, n, "scenario with", extra) for n in sizes
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
