"""timeline: the story of each contract, event by event.

Commands are shown through the events they caused: an event's `causation_id` is the id of
the command that appended it, and the command's type follows from the event's. Timers show
as the reminders and terminations they led to, with the delay that fired them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

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
from credit_contracts.views import queries
from procession import EventInfo, Message, Projection, Session, Store

NAME = "timeline"


def q(name: str) -> str:
    return queries(NAME)[name]


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


class Timeline(Projection):
    name = NAME

    def __init__(self) -> None:
        super().__init__()
        for event_type in STORY:
            self.on(event_type, self.record)

    def setup(self, session: Session) -> None:
        session.sql(q("create_table"))

    def reset(self, session: Session) -> None:
        session.sql(q("reset"))

    def record(self, session: Session, event: Any, info: EventInfo) -> None:
        command, story = STORY[type(event)]
        meta = info.metadata
        session.write(
            q("insert"),
            {
                "contract_id": event.contract_id,
                "position": info.position,
                "event_type": type(event).__name__,
                "occurred_at": meta["occurred_at"],
                "correlation_id": meta.get("correlation_id"),
                "causation_id": meta.get("causation_id"),
                "command": command,
                "summary": story(event),
            },
        )


def timeline(store: Store, contract_id: str) -> list[TimelineEntry]:
    with store.session() as session:
        rows = session.sql(q("of_contract"), {"contract_id": contract_id})
    return [TimelineEntry(*row) for row in rows]
