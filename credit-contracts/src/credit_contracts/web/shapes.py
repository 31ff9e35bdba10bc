"""JSON shapes of the API's answers, built from the read models and the engine's progress."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from credit_contracts.domain.contract import STATUSES
from credit_contracts.views.batches import batch_view
from credit_contracts.views.contracts_by_customer import ContractRow
from credit_contracts.views.customer_summary import CustomerSummary
from credit_contracts.views.timeline import TimelineEntry
from procession import BatchProgress, CommandResult


def customer(summary: CustomerSummary) -> dict[str, Any]:
    contracts = {status: getattr(summary, status) for status in STATUSES}
    return {
        "id": summary.customer_id,
        "name": summary.name,
        "rating": summary.rating,
        "rating_changes": summary.rating_changes,
        "completed_changes": summary.completed_changes,
        "change_in_progress": summary.change_in_progress,
        "contracts": {**contracts, "total": sum(contracts.values())},
        "last_change": {
            "reconfirmed": summary.last_reconfirmed,
            "terminated": summary.last_terminated,
            "skipped": summary.last_skipped,
        },
    }


def contract(row: ContractRow) -> dict[str, Any]:
    return {
        "id": row.contract_id,
        "customer_id": row.customer_id,
        "title": row.title,
        "status": row.status,
        "opened_at_position": row.born_at,
        "updated_at": row.updated_at,
    }


def timeline_entry(entry: TimelineEntry) -> dict[str, Any]:
    return {
        "position": entry.position,
        "event": entry.event_type,
        "occurred_at": entry.occurred_at,
        "command": entry.command,
        "summary": entry.summary,
        "correlation_id": entry.correlation_id,
        "causation_id": entry.causation_id,
    }


def batch(progress: BatchProgress) -> dict[str, Any]:
    """The batch view, with the operator's controls now in force."""
    limit = progress.rate_limit
    return {
        **batch_view(progress),
        "paused": progress.paused,
        "max_in_flight": progress.max_in_flight,
        "rate_limit": None
        if limit is None
        else {"items": limit.items, "per_seconds": limit.per_seconds, "text": str(limit)},
    }


def batch_item(row: tuple[Any, ...]) -> dict[str, Any]:
    target_id, status, detail, updated_at, dispatched_at = row
    return {
        "target_id": target_id,
        "status": status,
        "detail": detail,
        "updated_at": moment(updated_at),
        "dispatched_at": moment(dispatched_at),
    }


def moment(ts: float | None) -> str | None:
    """A store timestamp (seconds, on the runtime's clock) as ISO 8601 text."""
    return None if ts is None else datetime.fromtimestamp(float(ts), UTC).isoformat()


def command(result: CommandResult) -> dict[str, Any]:
    return {
        "command_id": result.command_id,
        "events": result.events,
        "position": result.position,
        "duplicate": result.duplicate,
    }
