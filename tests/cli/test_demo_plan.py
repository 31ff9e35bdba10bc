"""The demo plan, with no database: who gets which contract, and what is derived from the seed."""

from __future__ import annotations

from collections import Counter

import pytest

from credit_contracts.demo import DemoPlan, DemoPlanned, decide_plan
from procession import CommandRejected


def test_most_contracts_belong_to_the_customer_whose_rating_changes() -> None:
    plan = DemoPlan(seed=3, contracts=1000, customers=4)
    owners = Counter(c.customer_id for c in plan.openings())
    assert sum(owners.values()) == 1000
    assert owners[plan.changed_customer] == plan.affected == 901
    assert sorted(owners.values()) == [33, 33, 33, 901]
    assert list(plan.contracts_of_changed()) == [
        c.contract_id for c in plan.openings() if c.customer_id == plan.changed_customer
    ]


def test_a_plan_with_one_customer_or_few_contracts_puts_all_in_the_batch() -> None:
    assert DemoPlan(contracts=10, customers=1).affected == 10
    assert DemoPlan(contracts=5, customers=3).affected == 5


def test_ids_and_command_ids_follow_from_the_seed_alone() -> None:
    def derived(plan: DemoPlan) -> list[str]:
        commands = [*plan.registrations(), *plan.openings(), plan.rating_change()]
        return [c.command_id for c in commands] + [repr(c) for c in commands]

    one, same, other = DemoPlan(seed=8), DemoPlan(seed=8), DemoPlan(seed=9)
    assert derived(one) == derived(same)
    assert set(derived(one)).isdisjoint(derived(other))
    assert len({c.command_id for c in one.openings()}) == one.contracts


def test_the_rating_really_changes() -> None:
    for seed in range(50):
        plan = DemoPlan(seed=seed, contracts=1)
        assert plan.rating_change().new_rating != plan.registrations()[0].rating


def test_a_plan_is_recorded_once() -> None:
    plan = DemoPlan(seed=2)
    assert decide_plan(None, plan) == [DemoPlanned(plan=plan)]
    assert decide_plan(plan, DemoPlan(seed=2)) == []
    with pytest.raises(CommandRejected, match="already holds the demo seed=2"):
        decide_plan(plan, DemoPlan(seed=2, contracts=7))


@pytest.mark.parametrize(
    "options", [{"contracts": 0}, {"customers": 0}, {"never_sign": -0.1}, {"never_sign": 2.0}]
)
def test_a_plan_out_of_range_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be between"):
        DemoPlan(**options)  # type: ignore[arg-type]
