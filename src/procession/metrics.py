"""Prometheus metrics: what a store holds, read at scrape time, and what a worker did.

`StoreCollector` reads the store in one read transaction per scrape (cheap counts only): the
log's head, each consumer's lag, parked work by kind, the inbox, the outbox, timers and the
items of active batches by status. `WorkerMetrics` is a runtime's stage observer
(`Runtime(metrics=...)`): counters of work and a histogram of seconds per stage, in this
process. Each `registry()` is its own `CollectorRegistry` (never the global one), so tests
and several runtimes in one process do not collide.

    registry = metrics.registry(store, runtime=runtime)   # runtime: optional
    metrics.serve(registry, port=9100)                    # `procession worker --metrics-port`
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from procession.runtime.liveness import STALE_AFTER
from procession.states import BatchStatus, ItemStatus
from procession.store.base import Store
from procession.store.work import batches, commands, consumers, instances, timers, workers

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from procession.runtime.runtime import Runtime

__all__ = ["StoreCollector", "WorkerMetrics", "registry", "serve"]

log = logging.getLogger("procession")

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 3600.0)
"""A step's latency: milliseconds when woken at once, seconds when polled, an hour and more
when work waited (a retry, a paused batch, a virtual day)."""
PARKED_KINDS = ("delivery", "command", "consumer")


class StoreCollector(Collector):
    """Gauges read from the store when scraped. `consumer_names` adds consumers that have
    no checkpoint yet (a runtime's router and projections), so their lag shows from the
    start; the others are those the store has checkpoints for."""

    def __init__(self, store: Store, consumer_names: Iterable[str] = ()) -> None:
        self.store = store
        self.consumer_names = tuple(consumer_names)

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not read the store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "procession_store_up", "1 if the last scrape could read the store, else 0"
        )
        try:
            families = self._read()
        except Exception as exc:  # a database down must not break the whole scrape
            log.warning("metrics: cannot read the store: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> list[Metric]:
        with self.store.transaction(write=False) as tx:
            head = tx.head_position()
            saved, failed = consumers.positions(tx)
            inbox = instances.count(tx)
            pending = commands.count_pending(tx)
            due = timers.count(tx)
            parked_deliveries = len(instances.parked(tx))
            parked_commands = len(commands.parked(tx))
            seen = workers.listing(tx)
            active = batches.active(tx)
            items: dict[str, int] = dict.fromkeys((s.value for s in ItemStatus), 0)
            for batch in active:
                for item_status, n in batches.counts(tx, batch.batch_id).items():
                    items[item_status.value] = items.get(item_status.value, 0) + n

        head_family = GaugeMetricFamily(
            "procession_log_head_position",
            "Position of the newest event in the log (the events appended, in all)",
        )
        head_family.add_metric([], head)
        checkpoint = GaugeMetricFamily(
            "procession_consumer_checkpoint_position",
            "Position of the last event a log consumer has read",
            labels=["consumer"],
        )
        lag = GaugeMetricFamily(
            "procession_consumer_lag_events",
            "Events in the log a consumer has not read yet (head - checkpoint)",
            labels=["consumer"],
        )
        for name in sorted(set(saved) | set(self.consumer_names)):
            position = saved.get(name, 0)
            checkpoint.add_metric([name], position)
            lag.add_metric([name], max(head - position, 0))
        parked = GaugeMetricFamily(
            "procession_parked",
            "Work parked for an operator, by kind (see `procession parked`)",
            labels=["kind"],
        )
        parked_consumers = sum(1 for f in failed.values() if f.parked)
        for kind, n in zip(
            PARKED_KINDS, (parked_deliveries, parked_commands, parked_consumers), strict=True
        ):
            parked.add_metric([kind], n)
        inbox_family = GaugeMetricFamily(
            "procession_inbox_depth", "Deliveries waiting in process instances' inboxes"
        )
        inbox_family.add_metric([], inbox)
        outbox = GaugeMetricFamily(
            "procession_commands_pending", "Commands in the outbox not run yet"
        )
        outbox.add_metric([], pending)
        timer_family = GaugeMetricFamily("procession_timers", "Timers set and not fired yet")
        timer_family.add_metric([], due)
        batch_family = GaugeMetricFamily(
            "procession_batches_active",
            "Batches not completed or cancelled, by status",
            labels=["status"],
        )
        by_status: dict[str, int] = dict.fromkeys(
            (
                s.value
                for s in BatchStatus
                if s not in (BatchStatus.COMPLETED, BatchStatus.CANCELLED)
            ),
            0,
        )
        for batch in active:
            status = str(batch.status)
            by_status[status] = by_status.get(status, 0) + 1
        for status, n in sorted(by_status.items()):
            batch_family.add_metric([status], n)
        item_family = GaugeMetricFamily(
            "procession_batch_items",
            "Items of the active batches, by item status (summed over the batches)",
            labels=["status"],
        )
        for status, n in items.items():
            item_family.add_metric([status], n)
        alive = GaugeMetricFamily(
            "procession_workers_alive",
            "Workers that said they are alive within the last "
            f"{STALE_AFTER:.0f} s (each writes a heartbeat every few seconds)",
        )
        now = time.time()
        alive.add_metric(
            [], sum(1 for w in seen if w.stopped_at is None and now - w.seen_at <= STALE_AFTER)
        )
        return [
            alive,
            head_family,
            checkpoint,
            lag,
            parked,
            inbox_family,
            outbox,
            timer_family,
            batch_family,
            item_family,
        ]


class WorkerMetrics:
    """A runtime's stage observer: `Runtime(app, store, metrics=WorkerMetrics(registry))`,
    or `runtime.metrics = WorkerMetrics(registry)`. Called once per stage per round."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.work = Counter(
            "procession_stage_work",
            "Work this process's runtime did, by stage: log = events read by the log "
            "consumers (with the steps handed off to run in the same transaction), "
            "processes = steps run from the inbox, commands = commands run from the "
            "outbox, timers = timers fired, batches = batch work",
            ["stage"],
            registry=registry,
        )
        self.rounds = Counter(
            "procession_stage_runs",
            "Stage transactions this process's runtime ran, by stage",
            ["stage"],
            registry=registry,
        )
        self.seconds = Histogram(
            "procession_stage_seconds",
            "Seconds one stage's transaction took in this process (a round is one of each)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.steps = Counter(
            "procession_steps",
            "Process steps this process's runtime committed, by process",
            ["process"],
            registry=registry,
        )
        self.step_latency = Histogram(
            "procession_step_latency_seconds",
            "Seconds from a message's time (an event's recording, a timer's due time, a "
            "command's sending) to the committed step that handled it, by process, on the "
            "runtime's clock (virtual seconds on a virtual clock)",
            ["process"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.commands = Counter(
            "procession_commands",
            "Commands this process's runtime ran and committed, by command type and outcome "
            "(done, rejected, retrying, parked, skipped)",
            ["type", "outcome"],
            registry=registry,
        )
        self._children: dict[str, tuple[Counter, Counter, Histogram]] = {}

    def __call__(self, stage: str, work: int, seconds: float) -> None:
        children = self._children.get(stage)
        if children is None:
            children = self._children[stage] = (
                self.work.labels(stage),
                self.rounds.labels(stage),
                self.seconds.labels(stage),
            )
        work_counter, runs, histogram = children
        if work:
            work_counter.inc(work)
        runs.inc()
        histogram.observe(seconds)

    def committed(self, steps: list[tuple[str, float]], commands: list[tuple[str, str]]) -> None:
        """The steps and commands of one stage transaction, told after its commit."""
        for process, latency in steps:
            self.steps.labels(process).inc()
            self.step_latency.labels(process).observe(max(latency, 0.0))
        for command_type, outcome in commands:
            self.commands.labels(command_type, outcome).inc()

    def prepare(self, stages: Iterable[str]) -> None:
        """Make every stage's series exist (at zero) before the first round."""
        for stage in stages:
            self._children[stage] = (
                self.work.labels(stage),
                self.rounds.labels(stage),
                self.seconds.labels(stage),
            )


def registry(store: Store, runtime: Runtime | None = None) -> CollectorRegistry:
    """A new registry with the store's gauges; with a runtime, also its worker metrics
    (installed as the runtime's stage observer)."""
    found = CollectorRegistry(auto_describe=False)
    names = () if runtime is None else runtime.log.consumers
    found.register(StoreCollector(store, names))
    if runtime is not None:
        observer = WorkerMetrics(found)
        observer.prepare(name for name, _ in runtime.stages)
        runtime.metrics = observer
    return found


def serve(
    registry: CollectorRegistry, port: int, host: str = "127.0.0.1"
) -> tuple[WSGIServer, threading.Thread]:
    """Serve `registry` over HTTP at http://host:port/metrics from a daemon thread; stop it
    with `server.shutdown()`."""
    return start_http_server(port, addr=host, registry=registry)
