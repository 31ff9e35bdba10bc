"""Counting commands when process steps run theirs inline (no outbox row for a success)."""

from __future__ import annotations

import json

from procession.store.base import Tx


def commands_by_status(
    tx: Tx, inline_events: str, command_type: str | None = None
) -> dict[str, int]:
    """The commands table's count per status, with the commands process steps ran inside
    their own transaction counted as done: each left no row, only the events it appended,
    whose causation id is its id. `inline_events` is the type of event those commands
    append (one each); two events with one causation would be one command run twice, and
    fail here. `command_type` counts the rows of that type only."""
    where, params = ("WHERE type = :c", {"c": command_type}) if command_type else ("", {})
    statuses: dict[str, int] = dict(
        tx.sql(f"SELECT status, COUNT(*) FROM commands {where} GROUP BY status", params)
    )
    outbox = {command_id for (command_id,) in tx.sql("SELECT command_id FROM commands")}
    causes = [
        json.loads(meta)["causation_id"]
        for (meta,) in tx.sql("SELECT metadata FROM events WHERE type = :t", {"t": inline_events})
    ]
    inline = [cause for cause in causes if cause not in outbox]
    assert len(set(inline)) == len(inline), "an inline command ran twice"
    if inline:
        statuses["done"] = statuses.get("done", 0) + len(inline)
    return statuses
