"""ContractConfirmationProcessor: one instance per revoked contract, re-sign to re-confirm.

Started by `CustomerContractRevoked`, it asks the customer to re-sign, reminds after 3 and 7
days and terminates the contract at 14 days. Days are process time (the time of the message
handled), so a virtual clock runs fourteen days through the same code in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any

import msgspec

from credit_contracts.domain.messages import (
    ContractResigned,
    CustomerContractRevoked,
    ReconfirmContract,
    RequestResignature,
    SendReminder,
    TerminateContract,
)
from procession import (
    Complete,
    Message,
    ProcessManager,
    Route,
    Schedule,
    StepContext,
    TimerFired,
    continue_,
    start,
)

REMINDER_DAYS: tuple[int, ...] = (3, 7)
DEADLINE_DAYS = 14
DEADLINE_REASON = f"not re-signed within {DEADLINE_DAYS} days"


class Timer(StrEnum):
    """The timers of one confirmation. A StrEnum's members work as `match` value patterns
    (`case TimerFired(name=Timer.DEADLINE)`), where a bare constant would capture."""

    FIRST_REMINDER = "reminder-1"
    SECOND_REMINDER = "reminder-2"
    DEADLINE = "deadline"


REMINDERS = (Timer.FIRST_REMINDER, Timer.SECOND_REMINDER)
DEADLINE = Timer.DEADLINE
TIMERS = tuple(Timer)


def reminder_timer(n: int) -> Timer:
    return REMINDERS[n - 1]


class ConfirmationState(msgspec.Struct):
    status: str = "awaiting signature"
    reminders: int = 0


Handled = CustomerContractRevoked | ContractResigned


class ContractConfirmationProcessor(ProcessManager[ConfirmationState]):
    name = "ContractConfirmationProcessor"
    state_type = ConfirmationState

    def initial(self) -> ConfirmationState:
        return ConfirmationState()

    def interested(self, event: Handled) -> Route | None:
        """Its annotation is its subscription: `interested_in` is derived from it."""
        if isinstance(event, CustomerContractRevoked):
            return start(event.contract_id)
        if isinstance(event, ContractResigned):
            return continue_(event.contract_id)
        return None

    def handle(self, state: ConfirmationState, message: Message, ctx: StepContext) -> Sequence[Any]:
        """One timer at a time: the next reminder, then the deadline. Each firing sets the
        next, so a contract re-signed early writes one timer row and cancels one, instead of
        three set and three cancelled. The confirmation ends with the command that ends the
        contract's wait (re-confirm or terminate): the batch learns the outcome from the
        contract's own event, so nothing is left for this process to wait for."""
        contract_id = ctx.instance_id
        match message:
            case CustomerContractRevoked():
                return [RequestResignature(contract_id=contract_id), next_timer(0)]
            case TimerFired(name=Timer.DEADLINE):
                return [
                    TerminateContract(contract_id=contract_id, reason=DEADLINE_REASON),
                    Complete(),
                ]
            case TimerFired(name=name):
                return [timer_command(contract_id, name), next_timer(state.reminders + 1)]
            case ContractResigned():
                assert ctx.position is not None
                return [
                    ReconfirmContract(contract_id=contract_id, resigned_position=ctx.position),
                    Complete(),  # cancels the timer set
                ]
        return []

    def evolve(self, state: ConfirmationState, message: Message) -> ConfirmationState:
        match message:
            case TimerFired(name=name) if name != Timer.DEADLINE:
                return ConfirmationState(state.status, state.reminders + 1)
            case ContractResigned():
                return ConfirmationState("re-signed", state.reminders)
        return state


DAY_MARKS: tuple[int, ...] = (0, *REMINDER_DAYS, DEADLINE_DAYS)
"""Days after the revocation at which each timer falls due, from the revocation itself."""


def pending_timer(reminders_sent: int) -> Timer:
    """The one timer set while `reminders_sent` reminders have gone out."""
    return TIMERS[reminders_sent]


def next_timer(reminders_sent: int) -> Schedule:
    """The timer to set once `reminders_sent` reminders have gone out: due as many days
    after the moment it is set (the revocation, or the timer that just fired) as the
    schedule says."""
    days = DAY_MARKS[reminders_sent + 1] - DAY_MARKS[reminders_sent]
    return Schedule(pending_timer(reminders_sent), after=timedelta(days=days))


def timer_command(contract_id: str, name: str) -> SendReminder | TerminateContract:
    if name == DEADLINE:
        return TerminateContract(contract_id=contract_id, reason=DEADLINE_REASON)
    return SendReminder(contract_id=contract_id, n=int(name.rsplit("-", 1)[1]))
