"""A batch over N trivial targets: items/s and peak memory, per backend and size.

    python bench/batch.py                               # 100k and 1M, SQLite and PostgreSQL
    python bench/batch.py --sizes 100000 --backend sqlite

Each (backend, size) runs in a fresh child process, so its peak RSS is its own. The targets
are rows of a bench table (inserted raw, not timed); each item's command is a no-op handled
without events, and an item is done when its command has run: what is measured is the batch
machinery itself (enumeration, dispatch, throttle, command claims, item bookkeeping,
completion). Prints one JSON object on stdout; the acceptance rule is
`memory_ratio_1m_over_100k <= 2` (memory flat in the number of targets).
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
from procession import (
    App,
    BatchCompleted,
    Command,
    Complete,
    Event,
    HandlerContext,
    Message,
    ProcessManager,
    Projection,
    Route,
    Session,
    StartBatch,
    StepContext,
    SystemClock,
    open_store,
    start,
)


class Touch(Command, frozen=True, kw_only=True):
    target: str


class BenchStarted(Event, frozen=True, kw_only=True):
    run: str


class Targets(Projection):
    """The bench's target table; filled raw by the bench, so it handles no events."""

    name = "bench_targets"

    def setup(self, session: Session) -> None:
        session.sql("CREATE TABLE IF NOT EXISTS bench_targets (id TEXT PRIMARY KEY)")


def targets(
    session: Session, params: dict[str, Any], fence: int, after: str | None, limit: int
) -> list[str]:
    rows = session.sql(
        "SELECT id FROM bench_targets WHERE id > :after ORDER BY id LIMIT :limit",
        {"after": after or "", "limit": limit},
    )
    return [r[0] for r in rows]


class Owner(ProcessManager[dict[str, Any]]):
    name = "BenchOwner"
    interested_in = (BenchStarted,)

    def initial(self) -> dict[str, Any]:
        return {}

    def interested(self, event: Message) -> Route | None:
        assert isinstance(event, BenchStarted)
        return start(event.run)

    def handle(self, state: dict[str, Any], message: Message, ctx: StepContext) -> list[Any]:
        if isinstance(message, BenchStarted):
            return [
                StartBatch(
                    batch_id=f"bench-{message.run}",
                    source="targets",
                    template="touch",
                    fence=int(ctx.metadata["position"]),
                    await_outcome=False,
                    max_in_flight=1000,
                    page_size=1000,
                )
            ]
        if isinstance(message, BatchCompleted):
            return [Complete()]
        return []


def touch(ctx: HandlerContext, command: Touch) -> None:
    """A no-op: the item is done when its command has run."""


def bench_app() -> App:
    app = App("bench")
    app.register(BenchStarted)
    app.command(Touch, handler=touch)
    app.projection(Targets())
    app.process(Owner())
    app.target_source("targets", targets, projection="bench_targets")
    app.batch_template("touch", lambda target, params: Touch(target=target))
    return app


def fill(url: str, n: int) -> None:
    from procession import Runtime

    store = open_store(url)
    Runtime(bench_app(), store, SystemClock())  # creates the projection's table
    chunk = 20_000
    for start_at in range(0, n, chunk):
        rows = [{"id": f"t{i:08d}"} for i in range(start_at, min(n, start_at + chunk))]
        with store.transaction() as tx:
            tx.sql("INSERT INTO bench_targets (id) VALUES (:id)", rows)
    store.close()


def child(url: str, n: int) -> dict[str, Any]:
    """Run one batch of n items to completion in this process; report rate and memory."""
    from procession import Runtime

    fill(url, n)
    baseline = peak_rss_mb()
    store = open_store(url)
    runtime = Runtime(bench_app(), store, SystemClock())
    runtime.store.append("Bench-run", [BenchStarted(run="1")])
    started = time.perf_counter()
    stats = runtime.run_until_idle()
    seconds = time.perf_counter() - started
    progress = runtime.progress("bench-1")
    assert progress is not None and progress.status == "completed", progress
    assert progress.done == n, f"{progress.done} of {n} items done"
    store.close()
    return {
        "items": n,
        "seconds": round(seconds, 2),
        "items_per_s": round(n / seconds),
        "rounds": stats.rounds,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_run_mb": baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--child", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        n = sizes[0]
        print(json.dumps(in_fresh_store(args.child, "batch", lambda url: child(url, n))))
        return
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    out = header("batch")
    for backend in backends:
        results = {str(n): run_child(__file__, backend, n, "batch of") for n in sizes}
        entry: dict[str, Any] = {"runs": results}
        if "100000" in results and "1000000" in results:
            entry["memory_ratio_1m_over_100k"] = round(
                results["1000000"]["peak_rss_mb"] / results["100000"]["peak_rss_mb"], 2
            )
        out[backend] = entry
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
