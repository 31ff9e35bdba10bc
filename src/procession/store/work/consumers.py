"""Log consumers (the router, each projection): checkpoints, and failures parked per consumer."""

from __future__ import annotations

from procession.store.base import Tx
from procession.store.work.records import ConsumerFailure


def checkpoints(tx: Tx) -> dict[str, int]:
    return {str(name): int(position) for name, position in tx.rows("all_checkpoints")}


def set_checkpoint(tx: Tx, name: str, position: int) -> None:
    tx.set_checkpoint(name, position)


def forget(tx: Tx, name: str) -> None:
    """Drop a consumer's checkpoint: it starts again from the beginning of the log."""
    tx.run("delete_checkpoint", name=name)


def rewind(tx: Tx, name: str, position: int) -> None:
    """Move a consumer's checkpoint (back or forth): it next reads the event after it."""
    tx.run("set_checkpoint", name=name, position=position)


def positions(tx: Tx) -> tuple[dict[str, int], dict[str, ConsumerFailure]]:
    """Every consumer's checkpoint, and its failure if it has one, in one query."""
    saved: dict[str, int] = {}
    failed: dict[str, ConsumerFailure] = {}
    for kind, *row in tx.rows("consumer_positions"):
        if kind == "c":
            saved[str(row[0])] = int(row[1])
        else:
            failure = ConsumerFailure(*row)
            failed[failure.name] = failure
    return saved, failed


def failures(tx: Tx) -> dict[str, ConsumerFailure]:
    return {f.name: f for f in tx.records(ConsumerFailure, "consumer_failures")}


def record_failure(
    tx: Tx,
    name: str,
    position: int,
    attempts: int,
    error: str,
    *,
    parked: bool,
    until: float,
    now: float,
) -> None:
    tx.run(
        "record_consumer_failure",
        name=name,
        position=position,
        attempts=attempts,
        error=error,
        parked=int(parked),
        until=until,
        now=now,
    )


def clear_failure(tx: Tx, name: str) -> None:
    tx.defer_any("clear_consumer_failure", name=name)


def clear_failure_now(tx: Tx, name: str) -> int:
    return tx.run("clear_consumer_failure", name=name)


def next_due(tx: Tx, now: float) -> float | None:
    due = tx.scalar("next_consumer_due", now=now)
    return None if due is None else float(due)
