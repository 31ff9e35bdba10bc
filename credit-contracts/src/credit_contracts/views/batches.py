"""A credit-change batch as plain data: one shape for the CLI's --json and the HTTP API."""

from __future__ import annotations

from typing import Any

from procession import BatchProgress

BATCH_PREFIX = "credit-"
"""Credit-change batches are named `credit-<customer>-<change_no>` (see `batch_id_for`)."""


def batch_view(progress: BatchProgress) -> dict[str, Any]:
    finished = progress.done + progress.failed + progress.skipped + progress.cancelled
    return {
        "id": progress.batch_id,
        "customer_id": progress.owner_instance or None,
        "change_no": change_no_of(progress.batch_id),
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


def change_no_of(batch_id: str) -> int | None:
    """The rating change a credit-change batch belongs to (None for other batches)."""
    if not batch_id.startswith(BATCH_PREFIX):
        return None
    _, _, change_no = batch_id.rpartition("-")
    return int(change_no) if change_no.isdigit() else None
