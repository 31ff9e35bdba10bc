"""Running a demo: setup, then processing on virtual time, here or in worker processes.

The live display (batch progress, virtual day, events/s) goes to stderr and only when it is a
terminal; stdout is left to the summary (or the one JSON object of `--json`).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from credit_contracts.app import open_system
from credit_contracts.demo import DemoPlan, ensure_setup, outcome, record_plan
from procession import ProcessionError, Runtime, VirtualClock

DAY = 86_400.0
REFRESH = 0.2
"""Seconds between two looks at the batch's progress (each is a few queries)."""


class Counts(msgspec.Struct):
    rounds: int = 0
    work: int = 0
    clock_advances: int = 0


def drive(runtime: Runtime, tick: Callable[[], None] | None = None) -> Counts:
    """`run_until_idle`, a round at a time, so that a display can follow."""
    counts = Counts()
    while True:
        step = runtime.run_until_idle(max_rounds=1)
        counts.rounds += step.rounds
        counts.work += step.work
        counts.clock_advances += step.clock_advances
        if step.work == 0 and step.clock_advances == 0:
            return counts
        if tick is not None:
            tick()


def virtual_days(runtime: Runtime) -> float:
    runtime.clock.sync()  # workers may have moved the store's clock
    return (runtime.clock.now() - VirtualClock.EPOCH) / DAY


class LiveDisplay:
    """Two bars: contracts opened during setup, then the credit-change batch."""

    def __init__(self, runtime: Runtime, plan: DemoPlan, console: Console) -> None:
        self.runtime = runtime
        self.plan = plan
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
            refresh_per_second=8,
        )
        self.setup_task: TaskID | None = None
        self.batch_task: TaskID | None = None
        self.seen = (time.monotonic(), runtime.store.head_position())
        self.rate = 0.0
        self.last = 0.0

    def __enter__(self) -> LiveDisplay:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.tick(force=True)
        self.progress.stop()

    def opened(self, n: int) -> None:
        if self.progress.disable:
            return
        if self.setup_task is None:
            self.setup_task = self.progress.add_task(
                "opening contracts", total=self.plan.contracts, detail=""
            )
        self.progress.update(self.setup_task, completed=n)

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress.disable or (not force and now - self.last < REFRESH):
            return
        self.last = now
        if self.setup_task is not None:
            self.progress.update(self.setup_task, completed=self.plan.contracts)
            self.progress.stop_task(self.setup_task)
            self.setup_task = None
        head = self.runtime.store.head_position()
        then, before = self.seen
        if now > then:
            self.rate = 0.7 * self.rate + 0.3 * (head - before) / (now - then)
        self.seen = (now, head)
        self.show_batch()

    def show_batch(self) -> None:
        progress = self.runtime.progress(self.plan.batch_id)
        if progress is None:
            return
        if self.batch_task is None:
            self.batch_task = self.progress.add_task("credit change", total=None, detail="")
        detail = (
            f"[green]done {progress.done:,}[/] [red]failed {progress.failed:,}[/] "
            f"pending {progress.pending + progress.in_flight:,} | "
            f"day {virtual_days(self.runtime):5.1f} | {self.rate:8,.0f} events/s | "
            f"{progress.status}"
        )
        finished = progress.done + progress.failed + progress.skipped + progress.cancelled
        self.progress.update(
            self.batch_task, total=progress.total or None, completed=finished, detail=detail
        )


# -- worker processes ----------------------------------------------------------------------


def work(runtime: Runtime, stop: threading.Event) -> None:
    """A worker's loop. On shared virtual time the engine moves the clock only when no
    worker is inside a round, so work of one instant never runs at a later one."""
    runtime.run_forever(stop)


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    """Its stderr, read only if it dies (a pipe nobody reads could fill up and block it)."""

    @classmethod
    def spawn(cls, url: str) -> Worker:
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by wait)
        command = [sys.executable, "-m", "credit_contracts.cli", "worker", "--db", url]
        process = subprocess.Popen(
            [*command, "--clock", "virtual", "--stop-with-parent"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        return cls(process, log)

    def check(self) -> None:
        if self.process.poll() is not None:
            self.log.seek(0)
            lines = [ln for ln in self.log.read().decode(errors="replace").splitlines() if ln]
            last = lines[-1] if lines else f"exit code {self.process.returncode}"
            raise ProcessionError(f"worker {self.process.pid} died: {last}")

    def stop(self) -> None:
        """SIGTERM: the worker finishes its transaction and exits; SIGKILL after 30 s."""
        if self.process.poll() is None:
            self.process.terminate()

    def wait(self) -> None:
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def quiet(runtime: Runtime, plan: DemoPlan) -> bool:
    """The batch has completed and nothing is left to do, now or later."""
    progress = runtime.progress(plan.batch_id)
    if progress is None or progress.status != "completed":
        return False
    return runtime.quiescent()


def run_in_workers(
    runtime: Runtime, plan: DemoPlan, workers: int, tick: Callable[[], None]
) -> None:
    """Spawn the workers, follow them until the demo is over, stop them."""
    spawned = [Worker.spawn(runtime.store.url) for _ in range(workers)]
    try:
        while not quiet(runtime, plan):
            for worker in spawned:
                worker.check()
            tick()
            time.sleep(REFRESH)
    finally:
        for worker in spawned:
            worker.stop()
        for worker in spawned:
            worker.wait()


# -- the whole demo ------------------------------------------------------------------------


def run_demo(url: str, plan: DemoPlan, workers: int, console: Console) -> dict[str, Any]:
    """Record the plan (the first transaction), set up, run to the end; the summary."""
    started = time.monotonic()
    record_plan(url, plan)
    runtime = open_system(url, plan.simulation, virtual=True)
    with runtime.store:
        return finish_demo(runtime, plan, started, console, workers)


def finish_demo(
    runtime: Runtime, plan: DemoPlan, started: float, console: Console, workers: int = 1
) -> dict[str, Any]:
    """Complete whatever setup is missing, then process until the demo is over."""
    head = runtime.store.head_position()
    with LiveDisplay(runtime, plan, console) as display:
        ensure_setup(runtime, plan, display.opened)
        setup_seconds = time.monotonic() - started
        if workers > 1:
            run_in_workers(runtime, plan, workers, display.tick)
        else:
            drive(runtime, display.tick)
    seconds = time.monotonic() - started
    events = runtime.store.head_position() - head
    expected = plan.expected()
    data = outcome(runtime, plan)
    data.update(
        seed=plan.seed,
        never_sign=plan.never_sign,
        workers=workers,
        events=events,
        log_head=runtime.store.head_position(),
        seconds=round(seconds, 3),
        setup_seconds=round(setup_seconds, 3),
        events_per_second=round(events / seconds, 1) if seconds > 0 else 0.0,
        virtual_days=round(virtual_days(runtime), 3),
        expected_reconfirmed=expected["reconfirmed"],
        expected_terminated=expected["terminated"],
        matches_expected=(data["reconfirmed"], data["terminated"])
        == (expected["reconfirmed"], expected["terminated"]),
    )
    return data
