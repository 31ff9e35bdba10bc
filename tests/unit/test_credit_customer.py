"""The Customer aggregate, decided and evolved with no database."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from credit_contracts.domain.customer import RATINGS, Customer, CustomerState
from credit_contracts.domain.messages import (
    ChangeCustomerCreditRating,
    CompleteCreditChange,
    CreditChangeCompleted,
    CustomerCreditRatingChanged,
    CustomerRegistered,
    RegisterCustomer,
)
from procession import Command, CommandRejected, Event, NotFound
from procession.testing import AggregateScenario


def given(*events: Event) -> CustomerState:
    return Customer.fold(Customer.initial, events)


def when(state: CustomerState, command: Command) -> Sequence[Event]:
    return Customer.decide(state, command)


REGISTERED = CustomerRegistered(customer_id="c", name="Acme", rating="AA")


def changed(no: int, old: str, new: str) -> CustomerCreditRatingChanged:
    return CustomerCreditRatingChanged(
        customer_id="c", old_rating=old, new_rating=new, change_no=no
    )


def completion(no: int) -> CompleteCreditChange:
    return CompleteCreditChange(
        customer_id="c", change_no=no, batch_id=f"b{no}", reconfirmed=2, terminated=1, skipped=0
    )


def test_the_ratings_are_the_ten_of_the_scale() -> None:
    assert RATINGS == ("AAA", "AA", "A", "BBB", "BB", "B", "CCC", "CC", "C", "D")


def test_a_customer_registers_once_with_a_known_rating() -> None:
    command = RegisterCustomer(customer_id="c", name="Acme", rating="AA")
    assert when(given(), command) == [REGISTERED]
    with pytest.raises(CommandRejected, match="already registered"):
        when(given(REGISTERED), command)


@pytest.mark.parametrize("rating", ["", "aa", "E", "AAAA"])
def test_an_unknown_rating_is_rejected_with_the_scale(rating: str) -> None:
    with pytest.raises(CommandRejected, match="use one of AAA, AA, A, BBB"):
        when(given(), RegisterCustomer(customer_id="c", name="Acme", rating=rating))
    with pytest.raises(CommandRejected, match="unknown credit rating"):
        when(given(REGISTERED), ChangeCustomerCreditRating(customer_id="c", new_rating=rating))


def test_a_customer_needs_a_name() -> None:
    with pytest.raises(CommandRejected, match="needs a name"):
        when(given(), RegisterCustomer(customer_id="c", name="  ", rating="A"))


def test_rating_changes_are_numbered() -> None:
    state = given(REGISTERED)
    assert when(state, ChangeCustomerCreditRating(customer_id="c", new_rating="A")) == [
        changed(1, "AA", "A")
    ]
    state = given(REGISTERED, changed(1, "AA", "A"))
    assert when(state, ChangeCustomerCreditRating(customer_id="c", new_rating="D")) == [
        changed(2, "A", "D")
    ]
    assert (state.rating, state.change_no) == ("A", 1)


def test_a_change_to_the_same_rating_is_rejected() -> None:
    with pytest.raises(CommandRejected, match="already has credit rating AA: nothing to change"):
        when(given(REGISTERED), ChangeCustomerCreditRating(customer_id="c", new_rating="AA"))


def test_an_unknown_customer_is_not_found() -> None:
    with pytest.raises(NotFound, match="customer c does not exist"):
        when(given(), ChangeCustomerCreditRating(customer_id="c", new_rating="A"))
    with pytest.raises(NotFound):
        when(given(), completion(1))


def test_a_change_completes_once() -> None:
    state = given(REGISTERED, changed(1, "AA", "A"))
    [event] = when(state, completion(1))
    assert event == CreditChangeCompleted(
        customer_id="c", change_no=1, batch_id="b1", reconfirmed=2, terminated=1, skipped=0
    )
    assert when(given(REGISTERED, changed(1, "AA", "A"), event), completion(1)) == []


def test_a_change_that_never_happened_cannot_complete() -> None:
    state = given(REGISTERED, changed(1, "AA", "A"))
    for no in (0, 2):
        with pytest.raises(CommandRejected, match=f"no credit rating change {no}"):
            when(state, completion(no))


def test_an_older_change_may_complete_after_a_newer_one_started() -> None:
    state = given(REGISTERED, changed(1, "AA", "A"), changed(2, "A", "B"))
    assert [e.change_no for e in when(state, completion(1))] == [1]  # type: ignore[attr-defined]


def test_the_testing_kit_reads_the_same() -> None:
    AggregateScenario(Customer).given(REGISTERED).when(
        ChangeCustomerCreditRating(customer_id="c", new_rating="BB")
    ).then(changed(1, "AA", "BB"))
    AggregateScenario(Customer).given(REGISTERED, changed(1, "AA", "BB")).when(
        ChangeCustomerCreditRating(customer_id="c", new_rating="BB")
    ).then_rejects(CommandRejected, "nothing to change")
