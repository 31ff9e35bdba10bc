"""Worker liveness: who is running against this store, seen when (wall-clock seconds)."""

from __future__ import annotations

from procession.store.base import Tx
from procession.store.work.records import WorkerRow

FORGOTTEN_AFTER = 86_400.0
"""A worker not seen for a day is forgotten by the next worker to start."""


def seen(tx: Tx, worker_id: str, host: str, pid: int, now: float, rounds: int) -> None:
    tx.run("worker_seen", worker_id=worker_id, host=host, pid=pid, now=now, rounds=rounds)


def stopped(tx: Tx, worker_id: str, now: float, rounds: int) -> None:
    tx.run("worker_stopped", worker_id=worker_id, now=now, rounds=rounds)


def prune(tx: Tx, now: float) -> None:
    tx.run("prune_workers", before=now - FORGOTTEN_AFTER)


def listing(tx: Tx) -> list[WorkerRow]:
    return tx.records(WorkerRow, "list_workers")
