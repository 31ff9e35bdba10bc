"""How long an idle worker takes to notice a command: polling alone, and with LISTEN/NOTIFY.

    python bench/latency.py                       # 1 and 3 workers, notify off and on
    python bench/latency.py --samples 50 --workers 1 --notify on

A sample: `Runtime.send(Ping)` from this process (its own connection) appends `Pinged`; a
real `procession worker` process (`python -m procession.cli worker --clock system`) routes it
to the `Pong` process manager, whose step stamps the wall-clock time into the instance's state.
The latency is that stamp minus the time `send` was called (the send's own commit included;
`from_commit` is measured from `send`'s return). Samples are spaced by a random gap, so every
worker is idle, somewhere in its back-off, when the command arrives: that is the case
notifications are for (a busy worker does not wait). Each configuration gets a fresh schema
and fresh workers; "notify off" is `PROCESSION_NOTIFY=0` in every process (the workers poll,
with their back-off from 50 ms to 1 s), "on" the default. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import header, log, pg_schema
from procession import (
    Aggregate,
    App,
    Command,
    Event,
    Message,
    ProcessManager,
    Route,
    Runtime,
    StepContext,
    open_store,
    start,
)

ROOT = Path(__file__).resolve().parent.parent


class Ping(Command, frozen=True, kw_only=True):
    ping_id: str


class Pinged(Event, frozen=True, kw_only=True):
    ping_id: str


class PongState(msgspec.Struct):
    seen_at: float = 0.0


class Pong(ProcessManager[PongState]):
    """Stamps the moment its step handles `Pinged` (one instance a ping)."""

    name = "Pong"
    interested_in = (Pinged,)
    state_type = PongState

    def initial(self) -> PongState:
        return PongState()

    def interested(self, event: Message) -> Route | None:
        return start(event.ping_id) if isinstance(event, Pinged) else None

    def handle(self, state: PongState, message: Message, ctx: StepContext) -> list[Any]:
        return []

    def evolve(self, state: PongState, message: Message) -> PongState:
        return PongState(seen_at=time.time())


Pinger = Aggregate("Pinger", 0, lambda s, e: s + 1, lambda s, c: [Pinged(ping_id=c.ping_id)])


def build_app() -> App:
    app = App("latency")
    app.register(Pinged)
    app.command(Ping, Pinger, to=lambda c: c.ping_id)
    app.process(Pong())
    return app


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of the values."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "max_ms": round(max(ms), 1),
    }


def start_workers(url: str, n: int, notify: bool, logs: Path) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROCESSION_NOTIFY": "1" if notify else "0"}
    workers = []
    for i in range(n):
        with (logs / f"worker-{i}.log").open("wb") as out:
            command = [sys.executable, "-m", "procession.cli", "worker", "--app"]
            command += ["bench.latency:build_app", "--db", url, "--clock", "system"]
            workers.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out))
    return workers


def seen_at(runtime: Runtime, ping_id: str, timeout: float = 30.0) -> float:
    """The time the step stamped, read from this process (polling the instance's row)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with runtime.store.transaction(write=False) as tx:
            rows = tx.sql(
                "SELECT state FROM process_instances WHERE process = 'Pong' AND instance_id = :i",
                {"i": ping_id},
            )
        if rows:
            stamp = float(msgspec.json.decode(rows[0][0])["seen_at"])
            if stamp:
                return stamp
        time.sleep(0.002)
    raise SystemExit(f"ping {ping_id} was not handled in {timeout} s")


def measure(workers: int, notify: bool, samples: int, gap: tuple[float, float]) -> dict[str, Any]:
    from procession.store.postgres import PostgresBackend

    rng = random.Random(workers * 2 + notify)
    with pg_schema("bench_latency") as url, open_store(url, build_app().messages) as store:
        if isinstance(store.backend, PostgresBackend):
            store.backend.notify = notify  # the sender notifies (or not) as the workers do
        runtime = Runtime(build_app(), store)
        logs = Path(os.environ.get("TMPDIR", "/tmp"))
        procs = start_workers(url, workers, notify, logs)
        try:
            time.sleep(3.0)  # started, listening
            for warm in range(5):
                runtime.send(Ping(ping_id=f"warm-{warm}"))
                seen_at(runtime, f"warm-{warm}")
            sent, committed = [], []
            for i in range(samples):
                time.sleep(rng.uniform(*gap))
                ping_id = f"p{i:05}"
                before = time.time()
                runtime.send(Ping(ping_id=ping_id))
                after = time.time()
                stamp = seen_at(runtime, ping_id)
                sent.append(stamp - before)
                committed.append(stamp - after)
                if (i + 1) % 25 == 0:
                    log(f"workers={workers} notify={notify}: {i + 1}/{samples}")
            for proc in procs:
                if proc.poll() is not None:
                    raise SystemExit(f"a worker exited ({proc.returncode}) during the run")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return {
        "workers": workers,
        "notify": "on" if notify else "off",
        "n": samples,
        **summary(sent),
        "from_commit": summary(committed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 3])
    parser.add_argument("--notify", choices=["off", "on", "both"], default="both")
    parser.add_argument(
        "--gap",
        type=float,
        nargs=2,
        default=[0.5, 2.0],
        metavar=("MIN", "MAX"),
        help="seconds between two samples, drawn uniformly (default 0.5 2.0)",
    )
    args = parser.parse_args()
    out = header("latency")
    out["samples"] = args.samples
    out["gap_s"] = args.gap
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.notify]
    results = []
    for workers in args.workers:
        for notify in modes:
            log(f"workers={workers} notify={'on' if notify else 'off'} ...")
            result = measure(workers, notify, args.samples, (args.gap[0], args.gap[1]))
            log(json.dumps(result))
            results.append(result)
    out["results"] = results
    out["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
