"""The commands table: the idempotency record of every command, and the outbox."""

from __future__ import annotations

from typing import Any

from procession.states import CommandStatus
from procession.store.base import Tx
from procession.store.work.records import ClaimedCommand, KnownCommand, ParkedCommand


def find(tx: Tx, command_id: str) -> KnownCommand | None:
    return tx.record(KnownCommand, "find_command", command_id=command_id)


def record(
    tx: Tx, command_id: str, status: CommandStatus, available_at: float, message: dict[str, Any]
) -> None:
    """Insert a command (`message`: its message columns, a fresh dict this call completes);
    a command_id already known is ignored."""
    message["command_id"], message["status"], message["available_at"] = (
        command_id,
        status,
        available_at,
    )
    tx.defer_row("insert_command", message)


def record_attempted(tx: Tx, row: dict[str, Any]) -> None:
    """Insert a command already tried once (an inline command that did not succeed): its
    message columns, command_id, status, available_at, error and first_failed_at."""
    tx.defer_row("insert_attempted_command", row)


def claim(tx: Tx, now: float, limit: int) -> list[ClaimedCommand]:
    return tx.records(ClaimedCommand, "claim_commands", now=now, limit=limit)


def finish(
    tx: Tx, command_id: str, status: CommandStatus, result: str | None, error: str | None
) -> None:
    tx.defer_row(
        "finish_command",
        {"command_id": command_id, "status": status, "result": result, "error": error},
    )


def finish_many(tx: Tx, rows: list[dict[str, Any]]) -> None:
    tx.many("finish_command", rows)


def failed(
    tx: Tx, command_id: str, error: str, *, parked: bool, retry_at: float, now: float
) -> None:
    tx.defer_any(
        "retry_command",
        command_id=command_id,
        error=error,
        available_at=retry_at,
        status=CommandStatus.PARKED if parked else CommandStatus.PENDING,
        now=now,
    )


def parked(tx: Tx) -> list[ParkedCommand]:
    return tx.records(ParkedCommand, "parked_commands")


def retry_parked(tx: Tx, command_id: str, now: float) -> bool:
    return tx.run("unpark_command", command_id=command_id, now=now) == 1


def skip_parked(tx: Tx, command_id: str) -> bool:
    return tx.run("skip_command", command_id=command_id) == 1


def metadata(tx: Tx, command_id: str) -> str | None:
    value = tx.scalar("command_metadata", command_id=command_id)
    return None if value is None else str(value)


def any_pending(tx: Tx) -> bool:
    return tx.row("pending_commands") is not None


def count_pending(tx: Tx) -> int:
    return int(tx.scalar("count_pending_commands"))


def next_due(tx: Tx, now: float) -> float | None:
    due = tx.scalar("next_command_due", now=now)
    return None if due is None else float(due)


def messages(tx: Tx) -> list[tuple[str, int, str]]:
    """(type, schema_version, data) of every command, oldest first (for the testing kit)."""
    return [(str(t), int(v), str(d)) for t, v, d in tx.rows("list_commands")]
