"""customer_summary: each customer's rating, its changes, and contract counts per status."""

from __future__ import annotations

from typing import Any

import msgspec

from credit_contracts.domain.messages import (
    ContractOpened,
    ContractResigned,
    ContractTerminated,
    CreditChangeCompleted,
    CustomerContractReconfirmed,
    CustomerContractRevoked,
    CustomerCreditRatingChanged,
    CustomerRegistered,
)
from credit_contracts.views import queries
from credit_contracts.views.contracts_by_customer import STATUS_AFTER
from procession import EventInfo, Projection, Store, Tx

NAME = "customer_summary"


def q(name: str) -> str:
    return queries(NAME)[name]


class CustomerSummary(msgspec.Struct, frozen=True):
    customer_id: str
    name: str
    rating: str
    rating_changes: int
    completed_changes: int
    """The latest rating change whose batch has finished."""
    last_reconfirmed: int
    last_terminated: int
    last_skipped: int
    active: int
    pending: int
    resigned: int
    terminated: int

    @property
    def change_in_progress(self) -> bool:
        return self.completed_changes < self.rating_changes


class CustomerSummaryView(Projection):
    name = NAME

    def __init__(self) -> None:
        super().__init__()
        self.on(CustomerRegistered, self.registered)
        self.on(CustomerCreditRatingChanged, self.rating_changed)
        self.on(CreditChangeCompleted, self.change_completed)
        self.on(ContractOpened, self.contract_opened)
        for event_type in (
            CustomerContractRevoked,
            ContractResigned,
            CustomerContractReconfirmed,
            ContractTerminated,
        ):
            self.on(event_type, self.contract_moved)

    def setup(self, tx: Tx) -> None:
        tx.sql(q("create_customers"))
        tx.sql(q("create_contracts"))

    def reset(self, tx: Tx) -> None:
        tx.sql(q("reset_customers"))
        tx.sql(q("reset_contracts"))

    def registered(self, tx: Tx, e: CustomerRegistered, info: EventInfo) -> None:
        tx.write(
            q("insert_customer"), {"customer_id": e.customer_id, "name": e.name, "rating": e.rating}
        )

    def rating_changed(self, tx: Tx, e: CustomerCreditRatingChanged, info: EventInfo) -> None:
        tx.write(
            q("rating_changed"),
            {"customer_id": e.customer_id, "rating": e.new_rating, "change_no": e.change_no},
        )

    def change_completed(self, tx: Tx, e: CreditChangeCompleted, info: EventInfo) -> None:
        tx.write(
            q("change_completed"),
            {
                "customer_id": e.customer_id,
                "change_no": e.change_no,
                "reconfirmed": e.reconfirmed,
                "terminated": e.terminated,
                "skipped": e.skipped,
            },
        )

    def contract_opened(self, tx: Tx, e: ContractOpened, info: EventInfo) -> None:
        tx.write(q("insert_contract"), {"contract_id": e.contract_id, "customer_id": e.customer_id})
        count(tx, e.customer_id, "active", +1)

    def contract_moved(self, tx: Tx, e: Any, info: EventInfo) -> None:
        rows = tx.sql(q("contract_status"), {"contract_id": e.contract_id})
        new = STATUS_AFTER[type(e)]
        if not rows or rows[0][0] == new:
            return
        tx.write(q("set_contract_status"), {"contract_id": e.contract_id, "status": new})
        count(tx, e.customer_id, rows[0][0], -1)
        count(tx, e.customer_id, new, +1)


def count(tx: Tx, customer_id: str, status: str, delta: int) -> None:
    tx.write(q(f"inc_{status}"), {"customer_id": customer_id, "d": delta})


def customer_summary(store: Store, customer_id: str) -> CustomerSummary | None:
    with store.transaction(write=False) as tx:
        rows = tx.sql(q("one"), {"customer_id": customer_id})
    return CustomerSummary(*rows[0]) if rows else None


def customers(store: Store, after: str | None = None, limit: int = 100) -> list[CustomerSummary]:
    """A page of customers by id, strictly after `after`."""
    with store.transaction(write=False) as tx:
        rows = tx.sql(q("page"), {"after": after or "", "limit": limit})
    return [CustomerSummary(*row) for row in rows]
