"""Stores prepared in this process, on a real SQLite file, before the server opens them.

Each function leaves the store closed: the server (`python -m credit_contracts.web`) is the
only process holding it afterwards, apart from what a test does on purpose.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from credit_contracts.app import open_system
from credit_contracts.domain.messages import (
    ChangeCustomerCreditRating,
    OpenContract,
    RegisterCustomer,
)
from procession import RateLimit, Runtime, operations

STRAY = (
    "INSERT INTO cc_contracts (contract_id, customer_id, title, status, born_at, updated_at) "
    "VALUES ('ada-c9', 'ada', 'stray', 'active', 0, '')"
)


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


def with_ada(runtime: Runtime, contracts: int, width: int = 1) -> list[str]:
    """Ada Lovelace (AA) and her contracts `ada-c0`, `ada-c1`, ... (numbers `width` wide)."""
    runtime.send(RegisterCustomer(customer_id="ada", name="Ada Lovelace", rating="AA"))
    ids = [f"ada-c{n:0{width}d}" for n in range(contracts)]
    for contract_id in ids:
        runtime.send(OpenContract(contract_id=contract_id, customer_id="ada", title="Lease"))
    return ids


def poisoned(path: Path) -> None:
    """A stray row where the contracts projection inserts `ada-c9`: the projection fails,
    is retried on the virtual clock, and is parked."""
    runtime = open_system(url_of(path), virtual=True)
    with runtime.store:
        with_ada(runtime, 0)
        runtime.run_until_idle()
        with runtime.store.session(write=True) as session:
            session.sql(STRAY)
        runtime.send(OpenContract(contract_id="ada-c9", customer_id="ada", title="Lease"))
        runtime.run_until_idle()


def cure(path: Path) -> None:
    """Remove the stray row, from outside the server, as an operator would."""
    with sqlite3.connect(path, timeout=10) as db:
        db.execute("DELETE FROM cc_contracts WHERE contract_id = 'ada-c9' AND title = 'stray'")
    db.close()


BROKEN_STATE = '{"broken": '
"""A process instance's state cut short: it no longer decodes (as after a bad manual edit)."""


def process_state(path: Path, process: str, instance_id: str) -> str:
    """The stored state (JSON text) of one process instance."""
    with sqlite3.connect(path, timeout=10) as db:
        row = db.execute(
            "SELECT state FROM process_instances WHERE process = ? AND instance_id = ?",
            (process, instance_id),
        ).fetchone()
    db.close()
    assert row is not None and row[0] is not None, f"no state for {process} {instance_id}"
    return str(row[0])


def set_process_state(path: Path, process: str, instance_id: str, state: str) -> None:
    """Overwrite one process instance's stored state, from outside the server: a corruption,
    or an operator putting back the state saved before it."""
    with sqlite3.connect(path, timeout=10) as db:
        changed = db.execute(
            "UPDATE process_instances SET state = ? WHERE process = ? AND instance_id = ?",
            (state, process, instance_id),
        ).rowcount
    db.close()
    assert changed == 1, f"no instance {process} {instance_id}"


def large_batch(path: Path, contracts: int) -> list[str]:
    """Ada's `contracts` contracts, her rating changed and the batch dispatched: every
    contract awaits its re-signature (virtual clock, an hour after the change)."""
    runtime = open_system(url_of(path), virtual=True)
    with runtime.store:
        ids = with_ada(runtime, contracts, width=len(str(contracts - 1)))
        runtime.run_until_idle()
        runtime.send(ChangeCustomerCreditRating(customer_id="ada", new_rating="BB"))
        runtime.run_until(runtime.clock.now() + 3600)
    return ids


def throttled_batch(path: Path, contracts: int, batch_id: str, rate: str) -> None:
    """Ada's batch started (still enumerating: that is the batches stage, held here) with a
    rate limit in force; on the system clock, so a server's `--worker` enumerates it and
    dispatches its items at that rate."""
    runtime = open_system(url_of(path))
    with runtime.store:
        with_ada(runtime, contracts)
        runtime.run_until_idle()
        runtime.send(ChangeCustomerCreditRating(customer_id="ada", new_rating="BB"))
        stages = set(runtime.log.consumers) | {"processes"}  # the batches stage is held
        for _ in range(10):
            runtime.run_once_stages(stages)
            if runtime.progress(batch_id) is not None:
                break
        operations.throttle_batch(
            runtime.store, batch_id, rate_limit=RateLimit.parse(rate), by="test"
        )
        progress = runtime.progress(batch_id)
        assert progress is not None and progress.in_flight == 0, "nothing may be dispatched yet"
