"""The customer: registration, credit rating changes, and the record of finished changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from credit_contracts.domain.messages import (
    ChangeCustomerCreditRating,
    CompleteCreditChange,
    CreditChangeCompleted,
    CustomerCreditRatingChanged,
    CustomerRegistered,
    RegisterCustomer,
)
from procession import Aggregate, CommandRejected, Event, NotFound

RATINGS: tuple[str, ...] = ("AAA", "AA", "A", "BBB", "BB", "B", "CCC", "CC", "C", "D")


class CustomerState(msgspec.Struct):
    registered: bool = False
    name: str = ""
    rating: str = ""
    change_no: int = 0
    """How many rating changes the customer has had."""
    completed_no: int = 0
    """The latest change whose batch has finished."""


def check_rating(rating: str) -> None:
    if rating not in RATINGS:
        raise CommandRejected(f"unknown credit rating {rating!r}: use one of {', '.join(RATINGS)}")


def evolve(state: CustomerState, event: Any) -> CustomerState:
    match event:
        case CustomerRegistered(name=name, rating=rating):
            return CustomerState(True, name, rating)
        case CustomerCreditRatingChanged(new_rating=rating, change_no=no):
            return msgspec.structs.replace(state, rating=rating, change_no=no)
        case CreditChangeCompleted(change_no=no):
            return msgspec.structs.replace(state, completed_no=max(state.completed_no, no))
    return state


def decide(state: CustomerState, command: Any) -> Sequence[Event]:
    match command:
        case RegisterCustomer():
            return register(state, command)
        case ChangeCustomerCreditRating():
            return change_rating(state, command)
        case CompleteCreditChange():
            return complete_change(state, command)
    raise CommandRejected(f"a customer cannot handle {type(command).__name__}")


def register(state: CustomerState, command: RegisterCustomer) -> Sequence[Event]:
    if state.registered:
        raise CommandRejected(f"customer {command.customer_id} is already registered")
    if not command.name.strip():
        raise CommandRejected("a customer needs a name")
    check_rating(command.rating)
    return [
        CustomerRegistered(
            customer_id=command.customer_id, name=command.name, rating=command.rating
        )
    ]


def require(state: CustomerState, customer_id: str) -> None:
    if not state.registered:
        raise NotFound(f"customer {customer_id} does not exist")


def change_rating(state: CustomerState, command: ChangeCustomerCreditRating) -> Sequence[Event]:
    require(state, command.customer_id)
    check_rating(command.new_rating)
    if command.new_rating == state.rating:
        raise CommandRejected(
            f"customer {command.customer_id} already has credit rating {state.rating}: "
            "nothing to change"
        )
    return [
        CustomerCreditRatingChanged(
            customer_id=command.customer_id,
            old_rating=state.rating,
            new_rating=command.new_rating,
            change_no=state.change_no + 1,
        )
    ]


def complete_change(state: CustomerState, command: CompleteCreditChange) -> Sequence[Event]:
    require(state, command.customer_id)
    if not 1 <= command.change_no <= state.change_no:
        raise CommandRejected(
            f"customer {command.customer_id} has no credit rating change {command.change_no}"
        )
    if command.change_no <= state.completed_no:
        return []  # already recorded (or a later change finished first)
    return [
        CreditChangeCompleted(
            customer_id=command.customer_id,
            change_no=command.change_no,
            batch_id=command.batch_id,
            reconfirmed=command.reconfirmed,
            terminated=command.terminated,
            skipped=command.skipped,
        )
    ]


Customer: Aggregate[CustomerState] = Aggregate("Customer", CustomerState(), evolve, decide)
