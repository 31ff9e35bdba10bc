"""The two process managers as pure functions: routing, decisions, state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from credit_contracts.domain.messages import (
    CompleteCreditChange,
    ContractResigned,
    ContractTerminated,
    CustomerContractReconfirmed,
    CustomerContractRevoked,
    CustomerCreditRatingChanged,
    ReconfirmContract,
    RequestResignature,
    RevokeCustomerContract,
    SendReminder,
    TerminateContract,
)
from credit_contracts.processes.contract_confirmation import (
    ConfirmationState,
    ContractConfirmationProcessor,
)
from credit_contracts.processes.credit_change import (
    CreditChangeProcessor,
    CreditChangeState,
    revoke_template,
)
from procession import (
    BatchCompleted,
    Complete,
    Message,
    Schedule,
    StartBatch,
    StepContext,
    TimerFired,
    continue_,
    start,
)
from procession.testing import ProcessScenario

DAY = 86_400.0


def ctx(instance: str, position: int | None = None, now: float = 1000.0) -> StepContext:
    meta: dict[str, Any] = {} if position is None else {"position": position}
    return StepContext("p", instance, now, "msg-1", "corr-1", meta, position)


def changed(no: int) -> CustomerCreditRatingChanged:
    return CustomerCreditRatingChanged(
        customer_id="c", old_rating="AA", new_rating="A", change_no=no
    )


def completed(batch_id: str, status: str = "completed") -> BatchCompleted:
    return BatchCompleted(
        batch_id=batch_id, status=status, total=6, done=3, failed=2, skipped=1, cancelled=0
    )


# -- CreditChangeProcessor -------------------------------------------------------------------

CREDIT = CreditChangeProcessor(max_in_flight=7, page_size=9)


def credit_after(*messages: Message) -> CreditChangeState:
    state = CREDIT.initial()
    for message in messages:
        state = CREDIT.evolve(state, message)
    return state


def test_a_rating_change_starts_the_customers_instance() -> None:
    assert CREDIT.interested(changed(1)) == start("c")
    assert CREDIT.interested(ContractResigned(contract_id="k", customer_id="c")) is None


def test_a_rating_change_starts_a_fenced_batch_over_the_customers_contracts() -> None:
    [effect] = CREDIT.handle(credit_after(), changed(1), ctx("c", position=77))
    assert effect == StartBatch(
        batch_id="credit-c-1",
        source="contracts_of_customer",
        template="revoke_contract",
        fence=77,
        params={"customer_id": "c", "change_no": 1, "change_position": 77},
        max_in_flight=7,
        page_size=9,
        supersedes=None,
    )


def test_a_second_change_supersedes_the_running_batch() -> None:
    state = credit_after(changed(1))
    [effect] = CREDIT.handle(state, changed(2), ctx("c", position=90))
    assert isinstance(effect, StartBatch)
    assert (effect.batch_id, effect.supersedes) == ("credit-c-2", "credit-c-1")
    assert credit_after(changed(1), changed(2)) == CreditChangeState(
        2, "credit-c-2", ["credit-c-1"]
    )


def test_the_current_batch_completing_completes_the_change() -> None:
    state = credit_after(changed(1), changed(2))
    assert CREDIT.handle(state, completed("credit-c-2"), ctx("c")) == [
        CompleteCreditChange(
            customer_id="c",
            change_no=2,
            batch_id="credit-c-2",
            reconfirmed=3,
            terminated=2,
            skipped=1,
        ),
        Complete(),
    ]


def test_a_superseded_batch_completing_changes_nothing() -> None:
    state = credit_after(changed(1), changed(2))
    assert CREDIT.handle(state, completed("credit-c-1", "cancelled"), ctx("c")) == []


def test_the_template_revokes_one_contract_for_the_change() -> None:
    params = {"customer_id": "c", "change_no": 3, "change_position": 12}
    assert revoke_template("k", params) == RevokeCustomerContract(
        contract_id="k", customer_id="c", change_no=3, change_position=12
    )


# -- ContractConfirmationProcessor -----------------------------------------------------------

CONFIRM = ContractConfirmationProcessor()
REVOKED = CustomerContractRevoked(contract_id="k", customer_id="c", change_no=1)
RESIGNED = ContractResigned(contract_id="k", customer_id="c")


def test_confirmation_routing() -> None:
    assert CONFIRM.interested(REVOKED) == start("k")
    assert CONFIRM.interested(RESIGNED) == continue_("k")
    # the contract's end is the batch's business (outcome events), not this process's
    for event in (
        CustomerContractReconfirmed(contract_id="k", customer_id="c", resigned_position=1),
        ContractTerminated(contract_id="k", customer_id="c", reason="x"),
        changed(1),
    ):
        assert CONFIRM.interested(event) is None


def test_a_revoked_contract_is_sent_for_resignature_and_its_first_reminder_set() -> None:
    assert CONFIRM.handle(CONFIRM.initial(), REVOKED, ctx("k")) == [
        RequestResignature(contract_id="k"),
        Schedule("reminder-1", after=timedelta(days=3)),
    ]


def test_each_timer_sets_the_next_reminders_on_days_3_and_7_the_deadline_on_day_14() -> None:
    state = CONFIRM.initial()
    fire = [TimerFired(name=n) for n in ("reminder-1", "reminder-2", "deadline")]
    effects = []
    for timer in fire:
        effects.append(CONFIRM.handle(state, timer, ctx("k")))
        state = CONFIRM.evolve(state, timer)
    assert effects == [
        [SendReminder(contract_id="k", n=1), Schedule("reminder-2", after=timedelta(days=4))],
        [SendReminder(contract_id="k", n=2), Schedule("deadline", after=timedelta(days=7))],
        [
            TerminateContract(contract_id="k", reason="not re-signed within 14 days"),
            Complete(),
        ],
    ]
    assert state.reminders == 2


def test_a_signature_is_reconfirmed_and_ends_the_confirmation() -> None:
    effects = CONFIRM.handle(CONFIRM.initial(), RESIGNED, ctx("k", position=31))
    assert effects == [ReconfirmContract(contract_id="k", resigned_position=31), Complete()]
    assert CONFIRM.evolve(CONFIRM.initial(), RESIGNED) == ConfirmationState("re-signed", 0)


# -- the same process through the engine, with virtual days (procession.testing) -----------


@pytest.fixture
def scenario() -> Iterator[ProcessScenario]:
    """A confirmation revoked at day 0; the scenario's in-memory store is closed afterwards."""
    with ProcessScenario(ContractConfirmationProcessor()) as opened:
        yield opened.given(REVOKED)


def test_reminders_on_day_3_and_7_then_termination_on_day_14(scenario: ProcessScenario) -> None:
    assert scenario.timers("k") == [("reminder-1", 3 * DAY)]
    scenario.advance(days=3).then_commands(SendReminder(contract_id="k", n=1))
    assert scenario.timers("k") == [("reminder-2", 4 * DAY)]  # day 7: seconds from now
    scenario.advance(days=4).then_commands(SendReminder(contract_id="k", n=2))
    assert scenario.timers("k") == [("deadline", 7 * DAY)]  # day 14
    scenario.advance(days=6, hours=23).then_commands()
    scenario.advance(hours=1).then_commands(
        TerminateContract(contract_id="k", reason="not re-signed within 14 days")
    )
    assert scenario.status("k") == "done"
    assert scenario.timers("k") == []


def test_a_signature_on_day_5_is_reconfirmed_and_silences_the_timers(
    scenario: ProcessScenario,
) -> None:
    scenario.advance(days=5)
    scenario.when(RESIGNED).then_commands(
        ReconfirmContract(contract_id="k", resigned_position=scenario.store.head_position())
    )
    assert scenario.timers("k") == []
    assert scenario.state("k") == ConfirmationState("re-signed", 1)
    assert scenario.status("k") == "done"
