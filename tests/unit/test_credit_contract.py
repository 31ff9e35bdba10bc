"""The Contract aggregate: its lifecycle and the revocation rules a batch relies on."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from credit_contracts.domain.contract import Contract, ContractState
from credit_contracts.domain.messages import (
    ContractOpened,
    ContractReminderSent,
    ContractResignatureRequested,
    ContractResigned,
    ContractTerminated,
    CustomerContractReconfirmed,
    CustomerContractRevoked,
    OpenContract,
    ReconfirmContract,
    RequestResignature,
    RevokeCustomerContract,
    SendReminder,
    SignContract,
    TerminateContract,
)
from procession import Command, CommandRejected, Event, NotFound, Skipped

OPENED = ContractOpened(contract_id="k", customer_id="c", title="lease")
REVOKED = CustomerContractRevoked(contract_id="k", customer_id="c", change_no=1)
RESIGNED = ContractResigned(contract_id="k", customer_id="c")
RECONFIRMED = CustomerContractReconfirmed(contract_id="k", customer_id="c", resigned_position=50)
TERMINATED = ContractTerminated(contract_id="k", customer_id="c", reason="gone")


def given(*events: Event) -> ContractState:
    return Contract.fold(Contract.initial, events)


def when(state: ContractState, command: Command) -> Sequence[Event]:
    return Contract.decide(state, command)


def revoke(change_no: int = 1, position: int = 10, customer: str = "c") -> RevokeCustomerContract:
    return RevokeCustomerContract(
        contract_id="k", customer_id=customer, change_no=change_no, change_position=position
    )


def test_a_contract_opens_once_for_its_customer() -> None:
    command = OpenContract(contract_id="k", customer_id="c", title="lease")
    assert when(given(), command) == [OPENED]
    state = given(OPENED)
    assert (state.status, state.customer_id, state.title) == ("active", "c", "lease")
    with pytest.raises(CommandRejected, match="contract k already exists"):
        when(state, command)


def test_the_full_lifecycle_returns_to_active() -> None:
    state = given(OPENED)
    for command, status in [
        (revoke(), "pending"),
        (RequestResignature(contract_id="k"), "pending"),
        (SendReminder(contract_id="k", n=1), "pending"),
        (SignContract(contract_id="k"), "resigned"),
        (ReconfirmContract(contract_id="k", resigned_position=42), "active"),
    ]:
        state = Contract.run(state, command)[1]
        assert state.status == status
    assert (state.reminders, state.resigned_position) == (1, 42)


def test_events_name_the_customer() -> None:
    pending = given(OPENED, REVOKED)
    assert when(pending, RequestResignature(contract_id="k")) == [
        ContractResignatureRequested(contract_id="k", customer_id="c")
    ]
    assert when(pending, SendReminder(contract_id="k", n=2)) == [
        ContractReminderSent(contract_id="k", customer_id="c", n=2)
    ]


def test_an_active_contract_is_revoked() -> None:
    assert when(given(OPENED), revoke()) == [REVOKED]


def test_a_terminated_contract_is_skipped() -> None:
    with pytest.raises(Skipped, match="terminated: there is nothing to revoke"):
        when(given(OPENED, TERMINATED), revoke())


@pytest.mark.parametrize("events", [(OPENED, REVOKED), (OPENED, REVOKED, RESIGNED)])
def test_a_contract_awaiting_reconfirmation_is_carried_not_revoked_again(
    events: tuple[Event, ...],
) -> None:
    assert when(given(*events), revoke(change_no=2, position=99)) == []


def test_a_contract_resigned_after_the_change_is_skipped() -> None:
    state = given(OPENED, REVOKED, RESIGNED, RECONFIRMED)  # re-signed at position 50
    with pytest.raises(Skipped, match="re-signed after rating change 2"):
        when(state, revoke(change_no=2, position=49))
    assert when(state, revoke(change_no=2, position=51)) == [
        CustomerContractRevoked(contract_id="k", customer_id="c", change_no=2)
    ]


def test_a_revocation_for_another_customer_is_rejected() -> None:
    with pytest.raises(CommandRejected, match="belongs to customer c, not d"):
        when(given(OPENED), revoke(customer="d"))


@pytest.mark.parametrize(
    "command",
    [
        revoke(),
        RequestResignature(contract_id="k"),
        SendReminder(contract_id="k", n=1),
        SignContract(contract_id="k"),
        ReconfirmContract(contract_id="k"),
        TerminateContract(contract_id="k", reason="x"),
    ],
)
def test_an_unknown_contract_is_not_found(command: Command) -> None:
    with pytest.raises(NotFound, match="contract k does not exist"):
        when(given(), command)


def test_signing_twice_changes_nothing() -> None:
    assert when(given(OPENED, REVOKED), SignContract(contract_id="k")) == [RESIGNED]
    assert when(given(OPENED, REVOKED, RESIGNED), SignContract(contract_id="k")) == []


@pytest.mark.parametrize(
    ("events", "command", "message"),
    [
        (
            (OPENED,),
            SignContract(contract_id="k"),
            "is active: only a pending contract can be signed",
        ),
        ((OPENED, TERMINATED), SignContract(contract_id="k"), r"terminated \(gone\)"),
        ((OPENED,), RequestResignature(contract_id="k"), "only a pending contract can ask"),
        (
            (OPENED, REVOKED, RESIGNED),
            SendReminder(contract_id="k", n=1),
            "re-signed and awaiting re-confirmation: only a pending contract can remind",
        ),
        ((OPENED,), ReconfirmContract(contract_id="k"), "only a re-signed contract"),
        ((OPENED, REVOKED), ReconfirmContract(contract_id="k"), "is pending: only a re-signed"),
        (
            (OPENED, REVOKED, RESIGNED),
            TerminateContract(contract_id="k", reason="late"),
            "cannot be terminated",
        ),
        (
            (OPENED, TERMINATED),
            TerminateContract(contract_id="k", reason="again"),
            "cannot be terminated",
        ),
        ((OPENED,), TerminateContract(contract_id="k", reason=" "), "needs a reason"),
    ],
)
def test_illegal_transitions_are_rejected_in_plain_words(
    events: tuple[Event, ...], command: Command, message: str
) -> None:
    with pytest.raises(CommandRejected, match=message):
        when(given(*events), command)


@pytest.mark.parametrize("events", [(OPENED,), (OPENED, REVOKED)])
def test_an_active_or_pending_contract_can_be_terminated(events: tuple[Event, ...]) -> None:
    command = TerminateContract(contract_id="k", reason="gone")
    assert when(given(*events), command) == [TERMINATED]
    assert given(*events, TERMINATED).status == "terminated"


def test_evolve_ignores_foreign_events() -> None:
    state = given(OPENED)
    assert Contract.evolve(state, object()) is state
