"""The contract: active -> pending (revoked) -> resigned -> active again, or terminated.

A contract belongs to one customer for life. Revocation is the step a credit-change batch
applies to each contract, so its rules decide what a batch item becomes:

- terminated: `Skipped` (nothing to revoke);
- already pending or re-signed: no new event, the contract is *carried* into the new batch
  and the item finishes when this contract is re-confirmed or terminated;
- active, but re-signed after the rating change (a later log position): `Skipped`, it was
  already confirmed under the new rating;
- active: revoked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

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
from procession import Aggregate, CommandRejected, Event, NotFound, Skipped

STATUSES: tuple[str, ...] = ("active", "pending", "resigned", "terminated")


class ContractState(msgspec.Struct):
    status: str = "none"
    customer_id: str = ""
    title: str = ""
    change_no: int = 0
    """The rating change the contract was last revoked for."""
    reminders: int = 0
    resigned_position: int = 0
    """The log position of the last re-signature, once re-confirmed."""
    reason: str = ""


def evolve(state: ContractState, event: Any) -> ContractState:
    replace = msgspec.structs.replace
    match event:
        case ContractOpened(customer_id=customer, title=title):
            return ContractState("active", customer, title)
        case CustomerContractRevoked(change_no=no):
            return replace(state, status="pending", change_no=no, reminders=0)
        case ContractReminderSent(n=n):
            return replace(state, reminders=n)
        case ContractResigned():
            return replace(state, status="resigned")
        case CustomerContractReconfirmed(resigned_position=position):
            return replace(state, status="active", resigned_position=position)
        case ContractTerminated(reason=reason):
            return replace(state, status="terminated", reason=reason)
    return state


def decide(state: ContractState, command: Any) -> Sequence[Event]:
    if isinstance(command, OpenContract):
        return open_contract(state, command)
    if state.status == "none":
        raise NotFound(f"contract {command.contract_id} does not exist")
    decision = DECISIONS.get(type(command))
    if decision is None:
        raise CommandRejected(f"a contract cannot handle {type(command).__name__}")
    return decision(state, command)


def open_contract(state: ContractState, command: OpenContract) -> Sequence[Event]:
    if state.status != "none":
        raise CommandRejected(f"contract {command.contract_id} already exists")
    return [
        ContractOpened(
            contract_id=command.contract_id, customer_id=command.customer_id, title=command.title
        )
    ]


def revoke(state: ContractState, command: RevokeCustomerContract) -> Sequence[Event]:
    cid = command.contract_id
    if command.customer_id != state.customer_id:
        raise CommandRejected(
            f"contract {cid} belongs to customer {state.customer_id}, not {command.customer_id}"
        )
    if state.status == "terminated":
        raise Skipped(f"contract {cid} is terminated: there is nothing to revoke")
    if state.status in ("pending", "resigned"):
        return []  # already awaiting re-confirmation: carried into this batch
    if state.resigned_position > command.change_position:
        raise Skipped(f"contract {cid} was re-signed after rating change {command.change_no}")
    return [
        CustomerContractRevoked(
            contract_id=cid, customer_id=state.customer_id, change_no=command.change_no
        )
    ]


def request_resignature(state: ContractState, command: RequestResignature) -> Sequence[Event]:
    require_pending(state, command.contract_id, "ask the customer to re-sign it")
    return [
        ContractResignatureRequested(contract_id=command.contract_id, customer_id=state.customer_id)
    ]


def send_reminder(state: ContractState, command: SendReminder) -> Sequence[Event]:
    require_pending(state, command.contract_id, "remind the customer")
    return [
        ContractReminderSent(
            contract_id=command.contract_id, customer_id=state.customer_id, n=command.n
        )
    ]


def sign(state: ContractState, command: SignContract) -> Sequence[Event]:
    if state.status == "resigned":
        return []  # signed already: signing twice changes nothing
    require_pending(state, command.contract_id, "be signed")
    return [ContractResigned(contract_id=command.contract_id, customer_id=state.customer_id)]


def reconfirm(state: ContractState, command: ReconfirmContract) -> Sequence[Event]:
    if state.status != "resigned":
        raise CommandRejected(
            f"contract {command.contract_id} is {describe(state)}: only a re-signed contract "
            "can be re-confirmed"
        )
    return [
        CustomerContractReconfirmed(
            contract_id=command.contract_id,
            customer_id=state.customer_id,
            resigned_position=command.resigned_position,
        )
    ]


def terminate(state: ContractState, command: TerminateContract) -> Sequence[Event]:
    cid = command.contract_id
    if state.status not in ("active", "pending"):
        raise CommandRejected(f"contract {cid} is {describe(state)}: it cannot be terminated")
    if not command.reason.strip():
        raise CommandRejected(f"terminating contract {cid} needs a reason")
    return [
        ContractTerminated(contract_id=cid, customer_id=state.customer_id, reason=command.reason)
    ]


def require_pending(state: ContractState, contract_id: str, action: str) -> None:
    if state.status != "pending":
        raise CommandRejected(
            f"contract {contract_id} is {describe(state)}: only a pending contract can {action}"
        )


def describe(state: ContractState) -> str:
    if state.status == "resigned":
        return "re-signed and awaiting re-confirmation"
    if state.status == "terminated":
        return f"terminated ({state.reason})"
    return state.status


DECISIONS: dict[type[Any], Callable[[ContractState, Any], Sequence[Event]]] = {
    RevokeCustomerContract: revoke,
    RequestResignature: request_resignature,
    SendReminder: send_reminder,
    SignContract: sign,
    ReconfirmContract: reconfirm,
    TerminateContract: terminate,
}

Contract: Aggregate[ContractState] = Aggregate("Contract", ContractState(), evolve, decide)
