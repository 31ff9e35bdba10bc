"""The simulated customers: behaviour is a pure function of seed and contract id."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from credit_contracts.domain.messages import (
    ContractReminderSent,
    ContractResignatureRequested,
    SignContract,
)
from credit_contracts.simulator import (
    DAY,
    Behaviour,
    ConfigureSimulation,
    CustomerSimulator,
    SimState,
    SimulationConfig,
    SimulationConfigured,
    behaviour,
    decide_config,
    expected_outcome,
)
from procession import CommandRejected, Complete, Schedule, StepContext, TimerFired, start

CONFIG = SimulationConfig(seed=7, never_sign=0.2)
IDS = [f"k{i}" for i in range(2000)]


def test_behaviour_depends_on_seed_and_contract_only() -> None:
    assert [behaviour(CONFIG, k) for k in IDS[:50]] == [behaviour(CONFIG, k) for k in IDS[:50]]
    assert [behaviour(CONFIG, k) for k in reversed(IDS[:50])][::-1] == [
        behaviour(CONFIG, k) for k in IDS[:50]
    ]
    other = SimulationConfig(seed=8, never_sign=0.2)
    assert [behaviour(CONFIG, k) for k in IDS[:50]] != [behaviour(other, k) for k in IDS[:50]]


def test_shares_follow_the_configuration() -> None:
    kinds = Counter(behaviour(CONFIG, k).kind for k in IDS)
    assert 0.16 < kinds["never"] / len(IDS) < 0.24
    signers = len(IDS) - kinds["never"]
    assert 0.45 < kinds["prompt"] / signers < 0.55
    assert kinds["late"] > 0 and kinds["after_second_reminder"] > 0


@pytest.mark.parametrize(
    ("kind", "trigger", "low", "high"),
    [
        ("prompt", "request", 0, 3),
        ("after_first_reminder", "reminder-1", 0, 4),
        ("after_second_reminder", "reminder-2", 0, 7),
        ("late", "request", 14, 21),
    ],
)
def test_signatures_fall_in_their_window(kind: str, trigger: str, low: int, high: int) -> None:
    plans = [b for b in (behaviour(CONFIG, k) for k in IDS) if b.kind == kind]
    assert plans and {b.trigger for b in plans} == {trigger}
    assert all(low * DAY < b.delay < high * DAY for b in plans)


def test_expected_outcome() -> None:
    for k in IDS[:200]:
        b = behaviour(CONFIG, k)
        terminated = b.kind in ("never", "late")
        assert expected_outcome(CONFIG, k) == ("terminated" if terminated else "reconfirmed")


def test_nobody_signs_when_never_sign_is_one() -> None:
    config = SimulationConfig(seed=1, never_sign=1.0)
    assert {behaviour(config, k) for k in IDS[:100]} == {Behaviour("never", None, 0.0)}


@pytest.mark.parametrize(
    "bad",
    [
        {"never_sign": 1.5},
        {"never_sign": -0.1},
        {"prompt": 0, "after_first_reminder": 0, "after_second_reminder": 0, "late": 0},
    ],
)
def test_a_bad_configuration_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SimulationConfig(**bad)


def first_with(kind: str) -> str:
    return next(k for k in IDS if behaviour(CONFIG, k).kind == kind)


def ctx(contract_id: str) -> StepContext:
    return StepContext("CustomerSimulator", contract_id, 0.0, "m", "c", {})


def test_the_customer_signs_on_its_trigger_only() -> None:
    sim = CustomerSimulator(CONFIG)
    k = first_with("after_first_reminder")
    request = ContractResignatureRequested(contract_id=k, customer_id="c")
    reminders = [ContractReminderSent(contract_id=k, customer_id="c", n=n) for n in (1, 2)]
    # routed only the message it reacts to: its instance starts there
    assert sim.interested(request) is None
    assert sim.interested(reminders[0]) == start(k)
    assert sim.interested(reminders[1]) is None
    assert sim.handle(sim.initial(), request, ctx(k)) == []
    delay = timedelta(seconds=behaviour(CONFIG, k).delay)
    assert sim.handle(sim.initial(), reminders[0], ctx(k)) == [Schedule("sign", after=delay)]
    assert sim.handle(sim.initial(), reminders[1], ctx(k)) == []
    assert sim.handle(sim.initial(), TimerFired(name="sign"), ctx(k)) == [
        SignContract(contract_id=k),
        Complete(),
    ]
    assert sim.evolve(sim.evolve(sim.initial(), request), reminders[0]) == SimState(True)
    # a redelivered trigger does not schedule the signature twice
    assert sim.handle(SimState(True), reminders[0], ctx(k)) == []


def test_a_customer_who_never_signs_is_never_started() -> None:
    sim = CustomerSimulator(CONFIG)
    k = first_with("never")
    for event in (
        ContractResignatureRequested(contract_id=k, customer_id="c"),
        ContractReminderSent(contract_id=k, customer_id="c", n=1),
        ContractReminderSent(contract_id=k, customer_id="c", n=2),
    ):
        assert sim.interested(event) is None


def test_the_configuration_is_recorded_once() -> None:
    command = ConfigureSimulation(config=CONFIG)
    assert decide_config(None, command) == [SimulationConfigured(config=CONFIG)]
    assert decide_config(CONFIG, command) == []
    with pytest.raises(CommandRejected, match="already runs the simulation"):
        decide_config(CONFIG, ConfigureSimulation(config=SimulationConfig(seed=8)))
