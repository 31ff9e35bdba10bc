"""timeline: the story of each contract, event by event.

Commands are shown through the events they caused: an event's `causation_id` is the id of
the command that appended it, and the command's type follows from the event's. Timers show
as the reminders and terminations they led to, with the delay that fired them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from credit_contracts.domain.contract import Contract
from credit_contracts.domain.messages import (
    CONTRACT_EVENTS,
    ContractOpened,
    ContractReminderSent,
    ContractResignatureRequested,
    ContractResigned,
    ContractTerminated,
    CustomerContractReconfirmed,
    CustomerContractRevoked,
)
from credit_contracts.processes.contract_confirmation import REMINDER_DAYS
from procession import Message, MessageRegistry, Store


class TimelineEntry(msgspec.Struct, frozen=True):
    position: int
    event_type: str
    occurred_at: str
    correlation_id: str | None
    causation_id: str | None
    command: str
    """The command that caused the event (its id is `causation_id`)."""
    summary: str


def reminder(e: ContractReminderSent) -> str:
    days = REMINDER_DAYS[e.n - 1] if 0 < e.n <= len(REMINDER_DAYS) else "?"
    return f"reminder {e.n} sent: the {days}-day timer fired"


STORY: dict[type[Message], tuple[str, Callable[[Any], str]]] = {
    ContractOpened: (
        "OpenContract",
        lambda e: f"opened for customer {e.customer_id}: {e.title or 'untitled'}",
    ),
    CustomerContractRevoked: (
        "RevokeCustomerContract",
        lambda e: f"revoked by credit rating change {e.change_no}: pending",
    ),
    ContractResignatureRequested: (
        "RequestResignature",
        lambda e: "the customer was asked to re-sign",
    ),
    ContractReminderSent: ("SendReminder", reminder),
    ContractResigned: ("SignContract", lambda e: "re-signed by the customer"),
    CustomerContractReconfirmed: ("ReconfirmContract", lambda e: "re-confirmed: active again"),
    ContractTerminated: ("TerminateContract", lambda e: f"terminated: {e.reason}"),
}
assert set(STORY) == set(CONTRACT_EVENTS)
EVENTS = MessageRegistry()
EVENTS.register_all(*CONTRACT_EVENTS)


def timeline(store: Store, contract_id: str) -> list[TimelineEntry]:
    """Read from the contract's own stream, not from a read model: the stream *is* the
    timeline, in log order, with each event's metadata. (A `cc_timeline` table kept the same
    rows a second time, a write per event that only this query read.)"""
    entries = []
    for recorded in store.read_stream(Contract.stream_id(contract_id)):
        event = EVENTS.from_dict(recorded.type, recorded.data, recorded.schema_version)
        command, story = STORY[type(event)]
        meta = recorded.metadata
        entries.append(
            TimelineEntry(
                position=recorded.position,
                event_type=recorded.type,
                occurred_at=meta["occurred_at"],
                correlation_id=meta.get("correlation_id"),
                causation_id=meta.get("causation_id"),
                command=command,
                summary=story(event),
            )
        )
    return entries
