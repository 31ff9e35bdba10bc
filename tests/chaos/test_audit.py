"""The audit's negative controls: a log with a doubled effect, or a contract that ends
otherwise than in the uninterrupted run, fails it. Without these, a green chaos test could
mean an audit that looks at nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from credit_contracts.app import build_app
from credit_contracts.demo import DemoPlan
from credit_contracts.domain.messages import ContractReminderSent, ContractTerminated
from procession import Event, open_store

from .audit import Audit, assert_same_outcomes, audit
from .scenario import uninterrupted

PLAN = DemoPlan(seed=3, contracts=60)


@pytest.fixture
def demo_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/audited.db"
    uninterrupted(url, PLAN)
    return url


def append_to_contract(url: str, contract_id: str, event: Event) -> None:
    """What a step run twice would leave: one more event at the end of the contract."""
    with open_store(url, build_app().messages) as store:
        version = len(list(store.read_stream(f"Contract-{contract_id}")))
        store.append(f"Contract-{contract_id}", [event], version)


def a_contract(ends: str, found: Audit) -> str:
    return next(c for c, outcome in sorted(found.outcomes.items()) if outcome == ends)


def test_the_uninterrupted_demo_passes_and_ends_as_the_simulation_predicts(demo_url: str) -> None:
    found = audit(demo_url, PLAN)
    assert len(found.outcomes) == PLAN.affected
    assert sorted(found.outcomes.values()).count("reconfirmed") == PLAN.expected()["reconfirmed"]
    assert_same_outcomes(found, found)


def test_a_second_outcome_fails_the_audit(demo_url: str) -> None:
    contract = a_contract("reconfirmed", audit(demo_url, PLAN))
    customer = PLAN.changed_customer
    append_to_contract(
        demo_url,
        contract,
        ContractTerminated(contract_id=contract, customer_id=customer, reason="x"),
    )
    with pytest.raises(AssertionError, match="2 outcomes of one revocation"):
        audit(demo_url, PLAN)


def test_a_doubled_reminder_fails_the_audit(demo_url: str) -> None:
    contract = a_contract("terminated", audit(demo_url, PLAN))
    customer = PLAN.changed_customer
    append_to_contract(
        demo_url, contract, ContractReminderSent(contract_id=contract, customer_id=customer, n=1)
    )
    with pytest.raises(AssertionError, match="reminders"):
        audit(demo_url, PLAN)


def test_one_contract_ending_otherwise_fails_the_comparison(demo_url: str) -> None:
    found = audit(demo_url, PLAN)
    contract = a_contract("terminated", found)
    other = dataclasses.replace(found, outcomes={**found.outcomes, contract: "reconfirmed"})
    with pytest.raises(AssertionError, match="1 contracts end otherwise"):
        assert_same_outcomes(other, found)
