"""Running a demo: setup, then processing on virtual time, here or in worker processes.

The live display (batch progress, virtual day, events/s) goes to stderr and only when it is a
terminal; stdout is left to the summary (or the one JSON object of `--json`).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, TypeVar

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

import procession
from credit_contracts.app import open_system
from credit_contracts.demo import DemoPlan, ensure_setup, outcome, record_plan
from procession import (
    ProcessionError,
    Runtime,
    VirtualClock,
    retry_delay,
)
from procession.policy import describe

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


MAX_RESTARTS = 3
RESTART_WINDOW = 600.0
"""A worker slot is restarted at most MAX_RESTARTS times within RESTART_WINDOW seconds; one
more death in that window ends the demo (a worker that cannot live is not retried for ever)."""
STDERR_TAIL = 3
"""How many of a dead worker's last stderr lines its report quotes."""


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

    @property
    def pid(self) -> int:
        return self.process.pid

    def death(self) -> str | None:
        """None while it lives; else why it died: its exit code or signal, and the last
        lines of its stderr that say something (not its start-up line)."""
        code = self.process.poll()
        if code is None:
            return None
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit {code}"
        said = self.last_words()
        return f"{how}: {said}" if said else how

    def last_words(self) -> str:
        self.log.seek(0, 2)
        self.log.seek(max(0, self.log.tell() - 8192))
        lines = [ln.strip() for ln in self.log.read().decode(errors="replace").splitlines()]
        meaningful = [ln for ln in lines if ln and not STARTED.match(ln)]
        return " | ".join(meaningful[-STDERR_TAIL:])

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


STARTED = re.compile(r"^worker \d+ started on ")


class Workers:
    """W worker processes, each in its slot; one that dies is reported and restarted, up to
    MAX_RESTARTS times per slot within RESTART_WINDOW seconds."""

    def __init__(self, url: str, count: int, console: Console) -> None:
        self.url = url
        self.console = console
        self.slots: list[Worker] = []
        self.deaths: list[deque[float]] = [deque() for _ in range(count)]
        self.restarts = 0
        for _ in range(count):
            self.slots.append(Worker.spawn(url))

    def check(self) -> None:
        """Restart the workers that died; ProcessionError when a slot dies too often."""
        for k, worker in enumerate(self.slots):
            why = worker.death()
            if why is None:
                continue
            worker.wait()
            now = time.monotonic()
            deaths = self.deaths[k]
            deaths.append(now)
            while deaths and deaths[0] < now - RESTART_WINDOW:
                deaths.popleft()
            if len(deaths) > MAX_RESTARTS:
                raise ProcessionError(
                    f"worker {worker.pid} died ({why}); worker slot {k + 1} died "
                    f"{len(deaths)} times in {RESTART_WINDOW:.0f} s: giving up"
                )
            self.slots[k] = replacement = Worker.spawn(self.url)
            self.restarts += 1
            self.console.print(
                f"worker {worker.pid} died ({why}); restarted as worker {replacement.pid} "
                f"(restart {len(deaths)} of {MAX_RESTARTS} for slot {k + 1})",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    def stop(self) -> None:
        for worker in self.slots:
            worker.stop()
        for worker in self.slots:
            worker.wait()


def quiet(runtime: Runtime, plan: DemoPlan) -> bool:
    """The batch has completed and nothing is left to do, now or later."""
    progress = runtime.progress(plan.batch_id)
    if progress is None or progress.status != "completed":
        return False
    return runtime.quiescent()


def run_in_workers(
    runtime: Runtime, plan: DemoPlan, workers: int, tick: Callable[[], None], console: Console
) -> int:
    """Spawn the workers, follow them until the demo is over, stop them; the restarts.

    The coordinator (this process) outlives its database as the workers do: a look that
    fails because the database dropped or refused a connection is retried with backoff."""
    crew = Workers(runtime.store.url, workers, console)
    try:
        while True:
            crew.check()
            if persist(runtime, console, lambda: quiet(runtime, plan), crew.check):
                return crew.restarts
            persist(runtime, console, tick, crew.check)
            time.sleep(REFRESH)
    finally:
        crew.stop()


T = TypeVar("T")


def connection_lost(runtime: Runtime, exc: Exception) -> bool:
    """The database refused or dropped a connection (PostgreSQL): worth trying again."""
    return procession.connection_lost(runtime.store.backend.url, exc)


def persist(
    runtime: Runtime,
    console: Console,
    action: Callable[[], T],
    meanwhile: Callable[[], None] | None = None,
) -> T:
    """`action()`, tried again (backing off up to 5 s, as workers do) for as long as the
    database cannot be reached; `meanwhile` runs between tries (the workers' check)."""
    failures = 0
    while True:
        began = time.monotonic()
        try:
            return action()
        except Exception as exc:
            if not connection_lost(runtime, exc):
                raise
            failures = 1 if time.monotonic() - began > 1.0 else failures + 1
            delay = retry_delay(failures)
            console.print(
                f"demo: the database connection failed ({failures} in a row), retrying in "
                f"{delay:.2f} s: {describe(exc)}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            time.sleep(delay)
            if meanwhile is not None:
                meanwhile()


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
    head = persist(runtime, console, runtime.store.head_position)
    restarts = 0
    with persist(runtime, console, lambda: LiveDisplay(runtime, plan, console)) as display:
        persist(runtime, console, lambda: ensure_setup(runtime, plan, display.opened))
        setup_seconds = time.monotonic() - started
        if workers > 1:
            restarts = run_in_workers(runtime, plan, workers, display.tick, console)
        else:
            persist(runtime, console, lambda: drive(runtime, display.tick))
    seconds = time.monotonic() - started
    return persist(
        runtime,
        console,
        lambda: summary(runtime, plan, head, seconds, setup_seconds, workers, restarts),
    )


def summary(
    runtime: Runtime,
    plan: DemoPlan,
    head: int,
    seconds: float,
    setup_seconds: float,
    workers: int,
    restarts: int,
) -> dict[str, Any]:
    """The demo's JSON object, read from the store."""
    events = runtime.store.head_position() - head
    expected = plan.expected()
    data = outcome(runtime, plan)
    data.update(
        seed=plan.seed,
        never_sign=plan.never_sign,
        workers=workers,
        worker_restarts=restarts,
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
