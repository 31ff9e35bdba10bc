"""The runtime: an App wired to a store and a clock, with the loops that do the work.

`run_until_idle()` runs every stage until nothing is ready (fast-forwarding a virtual clock to
the next due timer), for tests, the demo and embedded use. `run_forever()` is the worker loop
of `procession worker`: on PostgreSQL any number of them share one database.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import msgspec

from procession.app import App
from procession.errors import ProcessionError
from procession.limits import Limits
from procession.messages import Command
from procession.policy import describe
from procession.process.batch import BatchProgress
from procession.runtime import batches, operations
from procession.runtime.batches import BatchWorker
from procession.runtime.clock import Clock, SystemClock
from procession.runtime.commands import CommandBus, CommandResult
from procession.runtime.consumers import LogConsumers
from procession.runtime.liveness import Heartbeat
from procession.runtime.projector import Projector, checkpoint_name
from procession.runtime.router import CHECKPOINT as ROUTER
from procession.runtime.router import Router
from procession.runtime.steps import StepRunner
from procession.runtime.timers import fire_due
from procession.store import connection_lost
from procession.store.base import Store, Tx
from procession.store.work import commands, consumers, instances, timers

__all__ = ["Limits", "RunStats", "Runtime", "StageCost", "StageObserver", "reconnecting"]


log = logging.getLogger("procession")
T = TypeVar("T")
MAINTAIN_EVERY = 5.0
"""Seconds of work between two maintenance passes over the work tables (PostgreSQL)."""


def retry_delay(failures: int, base: float = 0.05, cap: float = 5.0) -> float:
    """Seconds to wait after `failures` failed attempts in a row: base, doubling, at most
    cap. The exponent is bounded: 2**1100 does not convert to a float, and the OverflowError
    of the ~1075th failure in a row (a database down for an hour and a half) ended a worker."""
    return float(min(base * 2 ** min(failures, 16), cap))


def reconnecting(url: str, what: str, action: Callable[[], T], stop: threading.Event) -> T | None:
    """`action()`, tried again, backing off (`retry_delay`), for as long as the database at
    `url` cannot be reached or drops the connection (`connection_lost`); None once `stop`
    is set. Any other error is raised at once: a retry would not mend a bad URL, schema or
    app. What a worker does before its loop (open the store, read its setup), so a
    connection terminated while it starts ends it no more than one terminated later."""
    failures = 0
    while not stop.is_set():
        began = time.monotonic()
        try:
            return action()
        except Exception as exc:
            if not connection_lost(url, exc):
                raise
            # in a row: a run that went on for a while before it failed starts afresh
            failures = 1 if time.monotonic() - began > 1.0 else failures + 1
            delay = retry_delay(failures)
            log.error(
                "worker %s failed (%d in a row), retrying in %.2f s: %s",
                what,
                failures,
                delay,
                describe(exc),
            )
            stop.wait(delay)
    return None


StageObserver = Callable[[str, int, float], None]
"""Told, after each stage of a round: the stage's name, its work, its seconds. An observer
that also has a `committed(steps, commands)` method is told, after each stage's transaction
commits, the steps it ran (process name, seconds from the message's time to the step, on the
runtime's clock) and the commands it ran (command type, the status each ended in): exact
counts, nothing of a transaction rolled back."""


class RunStats(msgspec.Struct):
    rounds: int = 0
    work: int = 0
    clock_advances: int = 0


class StageCost(msgspec.Struct):
    """What one stage has cost since the runtime started (`Runtime.costs`): the cost model
    the benchmarks report per contract. `row_writes` is None where the backend does not
    count them (PostgreSQL)."""

    work: int = 0
    seconds: float = 0.0
    statements: int = 0
    executions: int = 0
    round_trips: int = 0
    row_writes: int | None = 0


@contextmanager
def bulk_gc() -> Iterator[None]:
    """Raise the collector's thresholds during bulk work (DESIGN §8 measured ~1.25x)."""
    old = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)


class Runtime:
    def __init__(
        self,
        app: App,
        store: Store,
        clock: Clock | None = None,
        skip: frozenset[str] = frozenset(),
        limits: Limits | None = None,
        metrics: StageObserver | None = None,
    ) -> None:
        """`skip` names stages not to run here (e.g. {"commands"} in a process test).

        `metrics`, if given, is called once per stage of each round with the stage's name,
        its work and its seconds (`procession.metrics.WorkerMetrics` feeds Prometheus).

        The store given is left as it is: the runtime works through a view of it with the
        app's message registry and this clock (`Store.using`). Over a store opened read-only
        it reads (progress, batches, checkpoints) and sets nothing up; running raises
        `ReadOnlyStore`.
        """
        app.check()
        self.coordination = store.backend.coordination
        self.limits = limits = limits or self.coordination.limits
        self._maintain_at = time.monotonic() + MAINTAIN_EVERY
        self.app = app
        self.clock = clock or SystemClock()
        self.store = store = store.using(registry=app.messages, now=self.clock.now)
        self.commands = CommandBus(app, store, self.clock.now)
        self.router = Router(app)
        self.projector = Projector(app)
        self.steps = StepRunner(app, inline=None if "commands" in skip else self.commands)
        self.batch_worker = BatchWorker(app)
        if not store.readonly:  # a read-only store is only read: its tables exist or not
            self.projector.setup(store)
        self.log = LogConsumers(app, self.router, self.projector)
        self.stages: list[tuple[str, Callable[[Tx, float], int]]] = [
            ("log", self._log_stage),
            ("processes", lambda tx, now: self.steps.run(tx, now, limit=limits.instances)),
            ("commands", lambda tx, now: self.commands.run_pending_in(tx, now, limits.commands)),
            ("timers", self._timers_stage),
            ("batches", self.batch_worker.run),
        ]
        self.stages = [(name, stage) for name, stage in self.stages if name not in skip]
        self.router.hand_off = limits.hand_off and "processes" not in skip and "log" not in skip
        self.costs: dict[str, StageCost] = {name: StageCost() for name, _ in self.stages}
        self.metrics = metrics
        self._gated = False
        """Inside a shared round of a virtual clock other workers share: each stage's
        transaction holds the gate too (`Coordination.hold_gate`)."""

    # -- commands ------------------------------------------------------------------------------

    def send(
        self, command: Command, correlation_id: str | None = None, causation_id: str | None = None
    ) -> CommandResult:
        """Execute a command now; raises CommandRejected (nothing stored) if the domain refuses."""
        return self.commands.send(command, correlation_id, causation_id)

    def send_many(
        self,
        commands: list[Command],
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> list[CommandResult]:
        """Execute many commands in one transaction (bulk set-up, imports): all or none."""
        return self.commands.send_many(commands, correlation_id, causation_id)

    # -- running -------------------------------------------------------------------------------

    def run_once(self) -> int:
        """One round of every stage; the work done.

        Each stage is a transaction; the backend's coordination says what a round is around
        them: nothing on PostgreSQL (stages commit on their own, so claims and the append lock
        are held briefly while other workers run), one transaction on SQLite (one process, one
        writer: the stages join it, which spares a commit per stage).
        """
        self.clock.sync()
        with self.coordination.round(self.store):
            return self._stages()

    def _log_stage(self, tx: Tx, now: float) -> int:
        """Every log consumer's next page; then, in the same transaction, the steps of the
        deliveries the router handed off (no inbox row for an instance free to take them)."""
        self.router.take()  # nothing left from a stage that failed before it got here
        read = self.log.run(tx, now, limit=self.limits.log_page)
        handed = self.router.take()
        if handed:
            self.steps.run_handed(tx, now, handed)
        return read

    def _timers_stage(self, tx: Tx, now: float) -> int:
        """Due timers fired; their steps run in the same transaction where the instance is
        free (as the router's deliveries), else they are queued."""
        hand_off = self.steps.run_handed if self.router.hand_off else None
        return fire_due(tx, now, limit=self.limits.timers, hand_off=hand_off)

    def _stages(self) -> int:
        work = 0
        counters = self.store.counters
        row_writes = self.store.backend.row_writes
        observe = self.metrics
        committed = getattr(observe, "committed", None)
        for name, stage in self.stages:
            now = self.clock.now()
            cost = self.costs[name]
            before = (counters.statements, counters.executions, counters.round_trips)
            writes, started = row_writes(), time.perf_counter()
            if committed is not None:  # the steps and commands of this stage, told once committed
                self.steps.record, self.commands.record = [], []
            try:
                with self.store.transaction() as tx:
                    if self._gated:  # each stage holds the gate itself, at the clock's time
                        self.coordination.hold_gate(tx.cursor)
                        self.clock.sync_in(tx)
                        now = self.clock.now()
                    done = stage(tx, now)
                    tx.flush()  # its writes counted here, not in the next stage's first read
                    if committed is not None:  # told at the real commit: on SQLite the round's
                        tx.after_commit(
                            partial(committed, self.steps.record or [], self.commands.record or [])
                        )
            finally:
                self.steps.record = self.commands.record = None
            work += done
            cost.work += done
            elapsed = time.perf_counter() - started
            cost.seconds += elapsed
            cost.statements += counters.statements - before[0]
            cost.executions += counters.executions - before[1]
            cost.round_trips += counters.round_trips - before[2]
            if writes is not None and cost.row_writes is not None:
                cost.row_writes += (row_writes() or 0) - writes
            else:
                cost.row_writes = None
            if observe is not None:
                observe(name, done, elapsed)
        return work

    def run_once_stages(self, names: set[str]) -> int:
        """One round of the named stages only (tests use it to stop a pipeline half way).

        Log consumers are named like their checkpoints: "router", "projection:<name>".
        """
        work = 0
        consumers = names & set(self.log.consumers)
        hand_off, self.router.hand_off = self.router.hand_off, False  # stages one by one
        try:
            for name, stage in self.stages:
                with self.store.transaction() as tx:
                    if name == "log" and consumers:
                        work += self.log.run(tx, self.clock.now(), only=consumers)
                    elif name in names:
                        work += stage(tx, self.clock.now())
        finally:
            self.router.hand_off = hand_off
        return work

    def run_until_idle(self, max_rounds: int | None = None) -> RunStats:
        """Run until nothing is ready; on a virtual clock, jump to the next due work and go on."""
        stats = RunStats()
        with bulk_gc():
            while max_rounds is None or stats.rounds < max_rounds:
                stats.rounds += 1
                done = self._round()
                stats.work += done
                if done:
                    continue
                if not self.clock.virtual:
                    break
                outcome = self._advance_when_quiet()
                if outcome == "idle":
                    break
                if outcome == "moved":
                    stats.clock_advances += 1
                elif outcome == "busy":
                    time.sleep(0.01)
        return stats

    def _round(self) -> int:
        if time.monotonic() >= self._maintain_at:
            self._maintain_at = time.monotonic() + MAINTAIN_EVERY
            self.coordination.maintain()
        if not self.clock.virtual:
            return self.run_once()
        with self.coordination.shared_round():  # virtual time shared with other workers
            self._gated = self.coordination.others_may_work
            try:
                return self.run_once()
            finally:
                self._gated = False

    def _advance_when_quiet(self, until: float | None = None) -> str:
        """Move a virtual clock to the next due work, only when no worker anywhere is inside
        a round and a round of our own, alone, finds nothing to do: otherwise work another
        worker is still committing would run at a later virtual time than it was caused at.

        Returns "moved", "work" (the round alone found some), "busy" (another worker is in a
        round) or "idle" (nothing is due at any time, or before `until`).
        """
        with self.coordination.exclusive_round() as alone:
            if not alone:
                return "busy"
            if self.coordination.others_may_work and self.run_once():
                return "work"
            due = self.next_due()
            if until is not None and (due is None or due > until):
                due = until if until > self.clock.now() else None
            if due is None:
                return "idle"
            self.clock.advance_to(due)
            return "moved"

    def run_until(self, when: float) -> RunStats:
        """Run what falls due up to `when` on a virtual clock, then leave the clock there.

        Time moves under the same gate as in `run_until_idle`: never while another worker
        sharing the clock is inside a round.
        """
        stats = RunStats()
        with bulk_gc():
            while True:
                stats.work += self.run_until_idle_no_advance()
                stats.rounds += 1
                outcome = self._advance_when_quiet(until=when)
                if outcome == "idle":
                    return stats
                if outcome == "moved":
                    stats.clock_advances += 1
                elif outcome == "busy":
                    time.sleep(0.01)

    def run_until_idle_no_advance(self) -> int:
        """Run until nothing is ready now, without moving any clock; the work done."""
        total = 0
        while done := self._round():
            total += done
        return total

    def run_forever(
        self, stop: threading.Event, idle_sleep: float = 0.05, max_sleep: float = 1.0
    ) -> None:
        """The worker loop: work while there is work, back off while idle, stop when told.

        Nothing but `stop` ends it: a failed round or clock move (the database restarted,
        a connection was terminated or refused) is logged, backed off and tried again.

        Idle, it waits up to the back-off's interval (`idle_sleep` doubling to `max_sleep`)
        for a wake-up: on PostgreSQL a transaction that made work due notifies on commit, so
        the wait ends in milliseconds (DESIGN §9). Polling stays the truth: work nobody
        notifies (a timer or a retry falling due) and a lost notification are found by the
        next round, at most `max_sleep` later.

        While it runs it says so every few seconds in the store's `workers` table, and
        goodbye when it stops (`procession.runtime.liveness`): what `procession status` and
        the health API list as live workers.
        """
        wait = self.store.backend.wait_for_wakeup
        sleep = idle_sleep
        failures = 0
        heartbeat = Heartbeat(self.store)
        heartbeat.start()
        with bulk_gc():
            while not stop.is_set():
                heartbeat.beat()
                try:
                    outcome = self._work_or_wait()
                except Exception as exc:
                    failures += 1
                    delay = retry_delay(failures, idle_sleep, max_sleep * 5)
                    log.error(
                        "worker round failed (%d in a row), retrying in %.2f s: %s",
                        failures,
                        delay,
                        describe(exc),
                    )
                    stop.wait(delay)
                    continue
                failures = 0
                if outcome in ("worked", "moved", "work"):
                    heartbeat.rounds += 1
                    sleep = idle_sleep
                    wait(0, stop)  # busy: take in the wake-ups (the next round looks anyway)
                    continue
                if outcome == "busy":  # another worker is in a round: look again shortly
                    stop.wait(idle_sleep)
                    continue
                wait(sleep, stop)
                sleep = min(sleep * 2, max_sleep)
        heartbeat.stop()

    def _work_or_wait(self) -> str:
        """One round; if it found nothing, try to move a virtual clock. What happened."""
        if self._round():
            return "worked"
        return self._advance_when_quiet() if self.clock.virtual else "idle"

    def quiescent(self) -> bool:
        """Nothing is ready now and nothing is due later, for every worker of the store.

        Parked work (a delivery, a command, a consumer) waits for an operator: it is not
        work. For supervisors and tests that must know a run is over. On PostgreSQL with
        virtual time it holds the round gate, so no worker is half way through a round; the
        answer comes from one snapshot.
        """
        with self.coordination.exclusive_round() as alone:
            if not alone:
                return False
            self.clock.sync()  # "ready" is judged at the shared clock's time, not ours
            with self.store.transaction(write=False) as tx:
                tx.snapshot()
                head = tx.head_position()
                saved = consumers.checkpoints(tx)
                failures = consumers.failures(tx)
                behind = [
                    name
                    for name in self.log.consumers
                    if saved.get(name, 0) < head
                    and not (name in failures and failures[name].parked)
                ]
                if behind or batches.has_work(tx):
                    return False
                now = self.clock.now()
                return not (
                    instances.ready(tx, now)
                    or instances.next_due(tx, now) is not None
                    or commands.any_pending(tx)
                    or timers.any_set(tx)
                )

    def next_due(self) -> float | None:
        """The earliest time a timer, a retried delivery, command or consumer becomes due,
        or a rate-limited batch may dispatch again."""
        now = self.clock.now()
        with self.store.transaction(write=False) as tx:
            dues = [
                timers.next_due(tx, now),
                instances.next_due(tx, now),
                commands.next_due(tx, now),
                consumers.next_due(tx, now),
                batches.next_due(tx, now),
            ]
        later = [d for d in dues if d is not None]
        return min(later) if later else None

    # -- read side -----------------------------------------------------------------------------

    def wait_for(self, position: int, timeout: float = 30.0) -> None:
        """Block until every projection has processed the log up to `position`.

        Raises `ProcessionError` at once if a projection is parked before it gets there.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self.store.transaction() as tx:
                saved = consumers.checkpoints(tx)
                behind = {
                    checkpoint_name(name)
                    for name in self.app.projections
                    if saved.get(checkpoint_name(name), 0) < position
                }
                if behind:
                    self.log.run(tx, self.clock.now(), only=behind, limit=self.limits.log_page)
                parked = [
                    f for name, f in consumers.failures(tx).items() if name in behind and f.parked
                ]
            if parked:
                f = parked[0]
                raise ProcessionError(
                    f"{f.name} is parked at position {f.position} ({f.error}): "
                    "see `procession parked`"
                )
            if not behind:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"projections did not reach position {position}")
            time.sleep(0.01)  # another worker holds them, or they read on: go on

    def rebuild(self, projection: str) -> int:
        """Empty a projection and replay the whole log into it; return events read."""
        target = self.app.projections[projection]
        key = checkpoint_name(projection)
        with self.store.transaction() as tx:
            tx.wait_singleton(key)  # no worker is feeding it meanwhile
            self.projector.reset(tx, target)
            target.setup(tx.session)
            consumers.clear_failure(tx, key)
        read = 0
        while True:
            with self.store.transaction() as tx:
                tx.wait_singleton(key)
                n = self.log.run(tx, self.clock.now(), only={key}, limit=self.limits.log_page)
                failure = consumers.failures(tx).get(key)
            read += n
            if failure is not None:
                raise ProcessionError(
                    f"rebuilding {projection} stopped at position {failure.position} "
                    f"({failure.error}): see `procession parked`"
                )
            if n == 0:
                return read

    def rewind(self, consumer: str, to_position: int) -> int:
        """Move a log consumer (`router`, `projection:<name>`, or a projection's name) back
        or forth: it next reads the events after `to_position`. Returns where it was."""
        if consumer in self.app.projections:
            consumer = checkpoint_name(consumer)
        known = frozenset(self.log.consumers)
        if consumer not in known:
            names = ", ".join(sorted(known))
            raise ProcessionError(f"no log consumer {consumer!r} (consumers: {names})")
        return operations.rewind(self.store, consumer, to_position, known)

    def batches(self, limit: int = 100, after: str | None = None) -> list[BatchProgress]:
        """The newest batches first, with their progress (`operations.list_batches`)."""
        return operations.list_batches(self.store, limit, after)

    def progress(self, batch_id: str) -> BatchProgress | None:
        with self.store.transaction(write=False) as tx:
            return batches.progress(tx, batch_id)

    def checkpoints(self) -> dict[str, Any]:
        with self.store.transaction(write=False) as tx:
            names = [ROUTER, *(checkpoint_name(n) for n in self.app.projections)]
            return {name: tx.checkpoint(name) for name in names} | {"head": tx.head_position()}
