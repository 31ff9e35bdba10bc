"""customer_summary: each customer's rating, its changes, and contract counts per status."""

from __future__ import annotations

import msgspec

from credit_contracts.domain.messages import (
    CreditChangeCompleted,
    CustomerCreditRatingChanged,
    CustomerRegistered,
)
from credit_contracts.views import queries
from procession import EventInfo, Projection, Session, Store

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

    def setup(self, session: Session) -> None:
        session.sql(q("create_customers"))

    def reset(self, session: Session) -> None:
        session.sql(q("reset_customers"))

    def registered(self, session: Session, e: CustomerRegistered, info: EventInfo) -> None:
        session.write(
            q("insert_customer"), {"customer_id": e.customer_id, "name": e.name, "rating": e.rating}
        )

    def rating_changed(
        self, session: Session, e: CustomerCreditRatingChanged, info: EventInfo
    ) -> None:
        session.write(
            q("rating_changed"),
            {"customer_id": e.customer_id, "rating": e.new_rating, "change_no": e.change_no},
        )

    def change_completed(self, session: Session, e: CreditChangeCompleted, info: EventInfo) -> None:
        session.write(
            q("change_completed"),
            {
                "customer_id": e.customer_id,
                "change_no": e.change_no,
                "reconfirmed": e.reconfirmed,
                "terminated": e.terminated,
                "skipped": e.skipped,
            },
        )


def customer_summary(store: Store, customer_id: str) -> CustomerSummary | None:
    with store.session() as session:
        rows = session.sql(q("one"), {"customer_id": customer_id})
    return CustomerSummary(*rows[0]) if rows else None


def customers(store: Store, after: str | None = None, limit: int = 100) -> list[CustomerSummary]:
    """A page of customers by id, strictly after `after`."""
    with store.session() as session:
        rows = session.sql(q("page"), {"after": after or "", "limit": limit})
    return [CustomerSummary(*row) for row in rows]
