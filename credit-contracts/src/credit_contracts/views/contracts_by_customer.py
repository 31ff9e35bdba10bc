"""contracts_by_customer: each contract's customer and status, and the batch's target source.

Aggregates are still loaded by id only; "all contracts of customer C" is a question for this
read model. Its eventual consistency is closed by the fence: the engine enumerates only once
this projection's checkpoint has reached the rating change's position, and `targets` returns
only contracts born at or before it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from credit_contracts.domain.messages import (
    ContractOpened,
    ContractResigned,
    ContractTerminated,
    CustomerContractReconfirmed,
    CustomerContractRevoked,
)
from credit_contracts.views import queries
from procession import EventInfo, Message, Projection, Session, Store

NAME = "contracts_by_customer"
STATUS_AFTER: dict[type[Message], str] = {
    CustomerContractRevoked: "pending",
    ContractResigned: "resigned",
    CustomerContractReconfirmed: "active",
    ContractTerminated: "terminated",
}


def q(name: str) -> str:
    return queries(NAME)[name]


class ContractRow(msgspec.Struct, frozen=True):
    contract_id: str
    customer_id: str
    title: str
    status: str
    born_at: int
    updated_at: str


class ContractsByCustomer(Projection):
    name = NAME

    def __init__(self) -> None:
        super().__init__()
        self.on(ContractOpened, self.opened)
        for event_type in STATUS_AFTER:
            self.on(event_type, self.status_changed)

    def setup(self, session: Session) -> None:
        session.sql(q("create_table"))
        session.sql(q("create_index"))
        session.sql(q("create_status_index"))

    def reset(self, session: Session) -> None:
        session.sql(q("reset"))

    def opened(self, session: Session, event: ContractOpened, info: EventInfo) -> None:
        session.write(
            q("insert"),
            {
                "contract_id": event.contract_id,
                "customer_id": event.customer_id,
                "title": event.title,
                "born_at": info.position,
                "at": info.metadata["occurred_at"],
            },
        )

    def status_changed(self, session: Session, event: Any, info: EventInfo) -> None:
        session.write(
            q("set_status"),
            {
                "contract_id": event.contract_id,
                "status": STATUS_AFTER[type(event)],
                "at": info.metadata["occurred_at"],
            },
        )


def contract_targets(
    session: Session, params: dict[str, Any], fence: int, after: str | None, limit: int
) -> list[str]:
    """The target source of a credit-change batch: the customer's contracts at the fence."""
    rows = session.sql(
        q("targets"),
        {
            "customer_id": params["customer_id"],
            "after": after or "",
            "fence": fence,
            "limit": limit,
        },
    )
    return [row[0] for row in rows]


def contracts_of(
    store: Store,
    customer_id: str,
    status: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[ContractRow]:
    """A page of a customer's contracts (optionally of one status), by id after `after`."""
    params: dict[str, Any] = {"customer_id": customer_id, "after": after or "", "limit": limit}
    query = "of_customer"
    if status is not None:
        query, params["status"] = "of_customer_with_status", status
    with store.session() as session:
        rows = session.sql(q(query), params)
    return [ContractRow(*row) for row in rows]


def get_contract(store: Store, contract_id: str) -> ContractRow | None:
    with store.session() as session:
        rows = session.sql(q("one"), {"contract_id": contract_id})
    return ContractRow(*rows[0]) if rows else None
