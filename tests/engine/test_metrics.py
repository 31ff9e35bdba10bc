"""Prometheus metrics (`procession.metrics`): the store's gauges read at scrape time, a
runtime's stage counters, and `procession worker --metrics-port` serving them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from procession import Runtime, VirtualClock, metrics
from procession.runtime import operations
from procession.store.work import batches
from tests.engine.conftest import OpenStores
from tests.engine.test_failures import Fragile
from tests.support.toy import OpenAccount, ReviewGroup, build_app

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_scrape_after_a_run_with_a_poisoned_message(
    store_url: str, open_stores: OpenStores
) -> None:
    app = build_app()
    app.process(Fragile())
    store = open_stores(store_url)
    rt = Runtime(app, store, VirtualClock())
    registry = metrics.registry(store, rt)
    before = parse(generate_latest(registry).decode())
    assert value(before, "procession_store_up") == 1
    assert value(before, "procession_log_head_position") == 0
    assert value(before, "procession_stage_work_total", stage="log") == 0

    for account in ("good-1", "bad-1", "good-2"):
        rt.send(OpenAccount(account_id=account, group="g"))
    rt.run_until_idle()

    text = generate_latest(registry).decode()
    for family in ("procession_consumer_lag_events", "procession_stage_seconds"):
        assert f"# HELP {family} " in text
    samples = parse(text)
    with store.transaction(write=False) as tx:
        head = tx.head_position()
    assert head > 0
    assert value(samples, "procession_log_head_position") == head
    for consumer in rt.log.consumers:
        assert value(samples, "procession_consumer_lag_events", consumer=consumer) == 0
        assert value(samples, "procession_consumer_checkpoint_position", consumer=consumer) == head
    assert value(samples, "procession_parked", kind="delivery") == 1
    assert value(samples, "procession_parked", kind="command") == 0
    assert value(samples, "procession_parked", kind="consumer") == 0
    assert len(operations.parked(store)) == 1
    status = operations.status(store)
    assert value(samples, "procession_inbox_depth") == status["inbox"]
    assert value(samples, "procession_commands_pending") == status["commands_pending"]
    assert value(samples, "procession_timers") == status["timers"]
    for stage, cost in rt.costs.items():  # the observer saw what the cost counters saw
        assert value(samples, "procession_stage_work_total", stage=stage) == cost.work
        runs = value(samples, "procession_stage_runs_total", stage=stage)
        assert runs > 0
        assert value(samples, "procession_stage_seconds_count", stage=stage) == runs
        assert value(samples, "procession_stage_seconds_sum", stage=stage) == pytest.approx(
            cost.seconds
        )
    assert value(samples, "procession_stage_work_total", stage="log") > 0

    # new events, not yet read: the consumers lag by exactly that much
    rt.send(OpenAccount(account_id="good-3", group="g"))
    with store.transaction(write=False) as tx:
        new_head = tx.head_position()
    lagging = parse(generate_latest(registry).decode())
    assert value(lagging, "procession_log_head_position") == new_head
    assert value(lagging, "procession_consumer_lag_events", consumer="router") == new_head - head


def test_batch_items_by_status_for_active_batches(store_url: str, open_stores: OpenStores) -> None:
    store = open_stores(store_url)
    rt = Runtime(build_app(), store, VirtualClock())
    registry = metrics.registry(store, rt)
    rt.send_many([OpenAccount(account_id=f"a{i}", group="g") for i in range(30)])
    rt.send(ReviewGroup(group="g"))
    seen_active = False
    for _ in range(200):
        samples = parse(generate_latest(registry).decode())
        with store.transaction(write=False) as tx:
            expected: dict[str, int] = {}
            for batch in batches.active(tx):
                for status, n in batches.counts(tx, batch.batch_id).items():
                    expected[status.value] = expected.get(status.value, 0) + n
        for status in ("pending", "dispatched", "awaiting", "done", "failed", "skipped"):
            got = value(samples, "procession_batch_items", status=status)
            assert got == expected.get(status, 0), status
        seen_active = seen_active or sum(expected.values()) > 0
        if not rt.run_once():
            break
    rt.run_until_idle()
    assert seen_active, "the batch was scraped while it ran"
    done = parse(generate_latest(registry).decode())
    assert value(done, "procession_batch_items", status="done") == 0, "completed: not active"
    assert sum(v for (n, _), v in done.items() if n == "procession_batches_active") == 0


def test_a_store_that_cannot_be_read_says_so(tmp_path: Path, open_stores: OpenStores) -> None:
    store = open_stores(f"sqlite:///{tmp_path}/s.db")
    registry = metrics.registry(store)
    store.close()
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "procession_store_up") == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_worker_serves_metrics_on_its_port(store_url: str, open_stores: OpenStores) -> None:
    store = open_stores(store_url, build_app().messages)
    seeding = Runtime(build_app(), store, VirtualClock(store=store))
    seeding.send_many([OpenAccount(account_id=f"w{i}", group="g") for i in range(5)])
    with store.transaction(write=False) as tx:
        head = tx.head_position()
    port = free_port()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "procession.cli",
            "worker",
            "--app",
            "tests.support.toy:build_app",
            "--db",
            store_url,
            "--clock",
            "virtual",
            "--metrics-port",
            str(port),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        samples: Samples = {}
        while time.monotonic() < deadline:
            assert worker.poll() is None, worker.communicate()[1].decode()
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            assert answer.status_code == 200
            samples = parse(answer.text)
            if value(samples, "procession_consumer_lag_events", consumer="router") == 0:
                break
            time.sleep(0.2)
        assert value(samples, "procession_store_up") == 1
        assert value(samples, "procession_log_head_position") >= head
        assert value(samples, "procession_consumer_lag_events", consumer="router") == 0
        assert value(samples, "procession_stage_work_total", stage="log") >= head
        assert value(samples, "procession_stage_runs_total", stage="processes") > 0
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err.decode()
    assert b"metrics on http://127.0.0.1:" in err


def test_steps_and_commands_are_counted_exactly_once_committed(
    store_url: str, open_stores: OpenStores
) -> None:
    """Steps counted are the steps stored (each instance's version), not the attempts of a
    poisoned one; the latency histogram has one sample per step; commands the processes
    sent are counted by outcome."""
    app = build_app()
    app.process(Fragile())
    store = open_stores(store_url)
    rt = Runtime(app, store, VirtualClock())
    registry = metrics.registry(store, rt)
    for account in ("good-1", "bad-1", "good-2", "good-3"):
        rt.send(OpenAccount(account_id=account, group="g"))
    rt.send(ReviewGroup(group="g"))
    rt.run_until_idle()

    samples = parse(generate_latest(registry).decode())
    with store.session() as session:
        stored = {
            str(process): int(steps)
            for process, steps in session.sql(
                "SELECT process, SUM(version) FROM process_instances GROUP BY process"
            )
        }
    assert stored.get("Fragile") == 3  # the three good accounts; bad-1 never stepped
    assert len(operations.parked(store)) == 1  # bad-1: its three attempts are not steps
    for process, steps in stored.items():
        assert value(samples, "procession_steps_total", process=process) == steps
        latency = value(samples, "procession_step_latency_seconds_count", process=process)
        assert latency == steps
    commands = {
        (labels[1][1], labels[0][1]): n
        for (name, labels), n in samples.items()
        if name == "procession_commands_total"
    }
    assert commands, "the group review sends commands"
    assert all(outcome in {"done", "rejected"} for _type, outcome in commands)


def test_a_round_rolled_back_after_its_steps_ran_counts_none_of_them(
    store_url: str, open_stores: OpenStores
) -> None:
    """On SQLite a round is one transaction: a stage failing after the steps of an earlier
    one ran rolls them back too, and they must not have been counted (they run again)."""
    app = build_app()
    store = open_stores(store_url)
    rt = Runtime(app, store, VirtualClock())
    registry = metrics.registry(store, rt)
    for account in ("a-1", "a-2"):
        rt.send(OpenAccount(account_id=account, group="g"))
    rt.send(ReviewGroup(group="g"))
    failing = {"left": 1}
    stages = dict(rt.stages)

    def batches_once_broken(tx: Any, now: float) -> int:
        if failing["left"]:
            failing["left"] -= 1
            raise RuntimeError("the batches stage fails once")
        return stages["batches"](tx, now)

    rt.stages = [(n, batches_once_broken if n == "batches" else f) for n, f in rt.stages]
    with pytest.raises(RuntimeError):
        rt.run_until_idle()
    rt.run_until_idle()
    samples = parse(generate_latest(registry).decode())
    with store.session() as session:
        stored = {
            str(process): int(steps)
            for process, steps in session.sql(
                "SELECT process, SUM(version) FROM process_instances GROUP BY process"
            )
        }
    assert stored
    for process, steps in stored.items():
        assert value(samples, "procession_steps_total", process=process) == steps
