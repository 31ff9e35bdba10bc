"""Simulated customers who re-sign promptly, after a reminder, too late, or never.

Each contract's behaviour is drawn from `random.Random(f"{seed}/{contract_id}")`: it depends
on the seed and the contract only, never on the order in which contracts were opened or
messages processed, so the same seed gives the same outcome per contract on any backend and
after any crash. The configuration is itself an event in the store (stream
`Simulation-config`), so a restarted runner rebuilds the same app with `load_simulation`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Any, Literal

import msgspec

from credit_contracts.domain.messages import (
    ContractReminderSent,
    ContractResignatureRequested,
    SignContract,
)
from credit_contracts.processes.contract_confirmation import DEADLINE_DAYS, REMINDER_DAYS
from procession import (
    Aggregate,
    Command,
    CommandRejected,
    Complete,
    Event,
    Message,
    ProcessManager,
    Route,
    Schedule,
    StepContext,
    Store,
    TimerFired,
    start,
)

HOUR = 3600.0
DAY = 24 * HOUR
STREAM = "Simulation-config"
Kind = Literal["never", "prompt", "after_first_reminder", "after_second_reminder", "late"]


class SimulationConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Shares of customer behaviour. `never_sign` is a share of all contracts; the four
    weights split the others (they need not sum to 1)."""

    seed: int = 1
    never_sign: float = 0.1
    prompt: float = 0.5
    """Weight of customers who re-sign before the first reminder (day 3)."""
    after_first_reminder: float = 0.25
    after_second_reminder: float = 0.15
    late: float = 0.1
    """Weight of customers who re-sign after the deadline (day 14): too late."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.never_sign <= 1.0:
            raise ValueError(f"never_sign must be between 0 and 1, not {self.never_sign}")
        weights = (self.prompt, self.after_first_reminder, self.after_second_reminder, self.late)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("behaviour weights must be >= 0 and not all 0")


class Behaviour(msgspec.Struct, frozen=True):
    kind: Kind
    trigger: str | None
    """What the customer reacts to: 'request', 'reminder-1', 'reminder-2', or None (never)."""
    delay: float
    """Seconds from the trigger to the signature."""

    @property
    def signs_in_time(self) -> bool:
        return self.kind not in ("never", "late")


# (kind, trigger, earliest and latest signature, in days after the trigger)
WINDOWS: tuple[tuple[Kind, str, float, float], ...] = (
    ("prompt", "request", 0.0, REMINDER_DAYS[0]),
    ("after_first_reminder", "reminder-1", 0.0, REMINDER_DAYS[1] - REMINDER_DAYS[0]),
    ("after_second_reminder", "reminder-2", 0.0, DEADLINE_DAYS - REMINDER_DAYS[1]),
    ("late", "request", DEADLINE_DAYS, DEADLINE_DAYS + 7),
)


def behaviour(config: SimulationConfig, contract_id: str) -> Behaviour:
    """The customer's behaviour for one contract: a pure function of seed and contract id."""
    rng = random.Random(f"{config.seed}/{contract_id}")
    if rng.random() < config.never_sign:
        return Behaviour("never", None, 0.0)
    weights = (
        config.prompt,
        config.after_first_reminder,
        config.after_second_reminder,
        config.late,
    )
    kind, trigger, low, high = rng.choices(WINDOWS, weights=weights)[0]
    # Whole hours, at least one clear of the window's ends (the timers' instants): customers
    # keep office hours, and a virtual clock has at most ~500 distinct instants to visit.
    hours = rng.randint(round(low * 24) + 1, round(high * 24) - 1)
    return Behaviour(kind, trigger, hours * HOUR)


def expected_outcome(config: SimulationConfig, contract_id: str) -> str:
    """'reconfirmed' or 'terminated': what the simulation will make of a revoked contract."""
    return "reconfirmed" if behaviour(config, contract_id).signs_in_time else "terminated"


# -- the simulated customer: a process manager per contract ---------------------------------


class SimState(msgspec.Struct):
    sign_scheduled: bool = False


class CustomerSimulator(ProcessManager[SimState]):
    """A customer hears only what they react to: the request or the reminder their behaviour
    names. The instance starts there, schedules the signature, and ends when it fires; a
    customer who never signs is never started (no step, no row for them)."""

    name = "CustomerSimulator"
    state_type = SimState

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config

    def initial(self) -> SimState:
        return SimState()

    def interested(
        self, event: ContractResignatureRequested | ContractReminderSent
    ) -> Route | None:
        trigger = trigger_of(event)
        if trigger is not None and planned(self.config, event.contract_id).trigger == trigger:
            return start(event.contract_id)
        return None

    def handle(self, state: SimState, message: Message, ctx: StepContext) -> Sequence[Any]:
        contract_id = ctx.instance_id
        if isinstance(message, TimerFired) and message.name == "sign":
            return [SignContract(contract_id=contract_id), Complete()]
        schedule = self.sign_timer(contract_id, trigger_of(message))
        return [] if schedule is None or state.sign_scheduled else [schedule]

    def sign_timer(self, contract_id: str, trigger: str | None) -> Schedule | None:
        plan = planned(self.config, contract_id)
        if trigger is None or plan.trigger != trigger:
            return None
        return Schedule("sign", after=timedelta(seconds=plan.delay))

    def evolve(self, state: SimState, message: Message) -> SimState:
        if isinstance(message, ContractResignatureRequested | ContractReminderSent):
            return SimState(
                state.sign_scheduled
                or self.sign_timer(message.contract_id, trigger_of(message)) is not None
            )
        return state


@lru_cache(maxsize=1 << 16)
def planned(config: SimulationConfig, contract_id: str) -> Behaviour:
    """`behaviour`, remembered for the contracts seen lately: the router asks for each
    request and reminder, and the step again (a seeded `Random` costs ~14 us)."""
    return behaviour(config, contract_id)


def trigger_of(message: Message) -> str | None:
    if isinstance(message, ContractResignatureRequested):
        return "request"
    if isinstance(message, ContractReminderSent):
        return f"reminder-{message.n}"
    return None


# -- the configuration, durable in the store -------------------------------------------------


class ConfigureSimulation(Command, frozen=True, kw_only=True):
    config: SimulationConfig


class SimulationConfigured(Event, frozen=True, kw_only=True):
    config: SimulationConfig


def decide_config(state: SimulationConfig | None, command: Any) -> Sequence[Event]:
    if not isinstance(command, ConfigureSimulation):
        raise CommandRejected(f"the simulation cannot handle {type(command).__name__}")
    if state is None:
        return [SimulationConfigured(config=command.config)]
    if state == command.config:
        return []
    raise CommandRejected(
        f"this store already runs the simulation {state}; use a fresh store for another"
    )


def evolve_config(state: SimulationConfig | None, event: Any) -> SimulationConfig | None:
    return event.config if isinstance(event, SimulationConfigured) else state


Simulation: Aggregate[SimulationConfig | None] = Aggregate(
    "Simulation", None, evolve_config, decide_config
)
SIMULATION_ID = "config"


def load_simulation(store: Store) -> SimulationConfig | None:
    """The simulation recorded in the store, if any (readable before any Runtime exists)."""
    events = [e for e in store.read_stream(STREAM) if e.type == SimulationConfigured.__name__]
    if not events:
        return None
    return msgspec.convert(events[-1].data["config"], SimulationConfig)
