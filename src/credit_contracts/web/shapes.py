"""JSON shapes of the API's answers, built from the read models and the engine's progress."""

from __future__ import annotations

from typing import Any

from credit_contracts.domain.contract import STATUSES
from credit_contracts.views.contracts_by_customer import ContractRow
from credit_contracts.views.customer_summary import CustomerSummary
from credit_contracts.views.timeline import TimelineEntry
from procession import BatchProgress, CommandResult

BATCH_PREFIX = "credit-"
"""Credit-change batches are named `credit-<customer>-<change_no>` (see `batch_id_for`)."""


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
    customer_id, change_no = batch_owner(progress.batch_id)
    finished = progress.done + progress.failed + progress.skipped + progress.cancelled
    return {
        "id": progress.batch_id,
        "customer_id": customer_id,
        "change_no": change_no,
        "status": progress.status,
        "enumerated": progress.enumerated,
        "total": progress.total,
        "done": progress.done,
        "failed": progress.failed,
        "skipped": progress.skipped,
        "cancelled": progress.cancelled,
        "pending": progress.pending,
        "in_flight": progress.in_flight,
        "finished": finished,
        "rate": progress.rate,
        "eta_seconds": progress.eta_seconds,
        "superseded_by": progress.superseded_by,
    }


def batch_owner(batch_id: str) -> tuple[str | None, int | None]:
    """The customer and change number a credit-change batch id names (None, None otherwise)."""
    if not batch_id.startswith(BATCH_PREFIX):
        return None, None
    customer_id, _, change_no = batch_id[len(BATCH_PREFIX) :].rpartition("-")
    if not customer_id or not change_no.isdigit():
        return None, None
    return customer_id, int(change_no)


def command(result: CommandResult) -> dict[str, Any]:
    return {
        "command_id": result.command_id,
        "events": result.events,
        "position": result.position,
        "duplicate": result.duplicate,
    }
