"""The demo: a recorded plan, an idempotent setup, and a summary of the outcome.

The plan (seed, contracts, customers, never_sign) is the first thing a demo writes: one
`DemoPlanned` event in the stream `Demo-plan`. Every id and every command_id of the setup is
derived from it, so a demo killed at any moment is finished by `credit-contracts run`: it
reads the plan, re-sends the setup (a command re-sent with its command_id is a no-op) and
runs the system. Setup is done once the plan's rating change is in the log: the change is
sent last, after every contract it must reach has been opened.

A demo writes only to a store of its own: an empty one, or one holding this same plan (which
it resumes). A store with events and no plan, or with another plan, is refused before
anything is written: the demo switches its store to virtual time and ends contracts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import msgspec

from credit_contracts.domain.customer import RATINGS, Customer
from credit_contracts.domain.messages import (
    ChangeCustomerCreditRating,
    CustomerCreditRatingChanged,
    OpenContract,
    RegisterCustomer,
)
from credit_contracts.processes.credit_change import batch_id_for
from credit_contracts.simulator import SimulationConfig, expected_outcome, load_simulation
from credit_contracts.views.customer_summary import customer_summary
from procession import (
    NO_STREAM,
    Command,
    CommandRejected,
    ConfigurationError,
    Event,
    MessageRegistry,
    Runtime,
    Store,
    derived_id,
    open_store,
)

PLAN_STREAM = "Demo-plan"
SEND_CHUNK = 1000
"""Commands per transaction: `send` would commit each (~2 ms on PostgreSQL, 20 s for 10,000);
`send_many` of 1,000 at a time opens 10,000 contracts in ~2.5 s there, ~0.3 s on SQLite."""
OTHERS_SHARE = 0.1
"""The share of contracts the customers whose rating stays the same hold between them."""
NAMES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Soylent", "Wonka", "Tyrell")


class DemoPlan(msgspec.Struct, frozen=True, kw_only=True):
    seed: int = 1
    contracts: int = 1000
    customers: int = 3
    never_sign: float = 0.1

    def __post_init__(self) -> None:
        if not 1 <= self.contracts <= 1_000_000:
            raise ValueError(f"--contracts must be between 1 and 1000000, not {self.contracts}")
        if not 1 <= self.customers <= 1000:
            raise ValueError(f"--customers must be between 1 and 1000, not {self.customers}")
        if not 0.0 <= self.never_sign <= 1.0:
            raise ValueError(f"--never-sign must be between 0 and 1, not {self.never_sign}")

    @property
    def simulation(self) -> SimulationConfig:
        return SimulationConfig(seed=self.seed, never_sign=self.never_sign)

    @property
    def customer_ids(self) -> list[str]:
        return [f"demo{self.seed}-customer-{k + 1}" for k in range(self.customers)]

    @property
    def changed_customer(self) -> str:
        """The customer whose rating changes: the first one, holding most contracts."""
        return self.customer_ids[0]

    @property
    def batch_id(self) -> str:
        return batch_id_for(self.changed_customer, 1)

    @property
    def others_each(self) -> int:
        others = self.customers - 1
        return int(self.contracts * OTHERS_SHARE) // others if others else 0

    @property
    def affected(self) -> int:
        """How many contracts the rating change reaches."""
        return self.contracts - self.others_each * (self.customers - 1)

    def contract_id(self, n: int) -> str:
        return f"demo{self.seed}-contract-{n + 1:07d}"

    def contracts_of_changed(self) -> Iterator[str]:
        return (self.contract_id(n) for n in range(self.affected))

    def openings(self) -> Iterator[OpenContract]:
        """Every contract of the plan, those of the changed customer first."""
        owners = self.customer_ids
        for n in range(self.contracts):
            extra = n - self.affected
            owner = owners[0] if extra < 0 else owners[1 + extra // self.others_each]
            contract_id = self.contract_id(n)
            yield OpenContract(
                contract_id=contract_id,
                customer_id=owner,
                title=f"demo contract {n + 1}",
                command_id=self.command_id("open", contract_id),
            )

    def registrations(self) -> list[RegisterCustomer]:
        ratings = self.ratings()
        return [
            RegisterCustomer(
                customer_id=cid,
                name=f"{NAMES[k % len(NAMES)]} {k // len(NAMES) + 1}",
                rating=ratings[k],
                command_id=self.command_id("register", cid),
            )
            for k, cid in enumerate(self.customer_ids)
        ]

    def rating_change(self) -> ChangeCustomerCreditRating:
        current = self.ratings()[0]
        new = random.Random(f"demo/{self.seed}/change").choice(
            [r for r in RATINGS[:7] if r != current]
        )
        return ChangeCustomerCreditRating(
            customer_id=self.changed_customer,
            new_rating=new,
            command_id=self.command_id("change", self.changed_customer),
        )

    def ratings(self) -> list[str]:
        rng = random.Random(f"demo/{self.seed}/ratings")
        return [rng.choice(RATINGS[:6]) for _ in range(self.customers)]

    def command_id(self, *parts: object) -> str:
        return derived_id("credit-contracts-demo", self.seed, *parts)

    def expected(self) -> dict[str, int]:
        """What the simulation will make of the changed customer's contracts."""
        tally = {"reconfirmed": 0, "terminated": 0}
        for contract_id in self.contracts_of_changed():
            tally[expected_outcome(self.simulation, contract_id)] += 1
        return tally


class DemoPlanned(Event, frozen=True, kw_only=True):
    plan: DemoPlan


def decide_plan(recorded: DemoPlan | None, plan: DemoPlan) -> Sequence[Event]:
    """Record a plan once; the same plan again is a no-op, another one is refused."""
    if recorded is None:
        return [DemoPlanned(plan=plan)]
    if recorded == plan:
        return []
    raise CommandRejected(
        f"this store already holds the demo {describe(recorded)}; finish it with "
        "`credit-contracts run --clock virtual` or use a fresh store"
    )


def describe(plan: DemoPlan) -> str:
    return (
        f"seed={plan.seed} contracts={plan.contracts} customers={plan.customers} "
        f"never_sign={plan.never_sign}"
    )


def load_plan(store: Store) -> DemoPlan | None:
    """The plan recorded in the store, if any (readable before any Runtime exists)."""
    events = [e for e in store.read_stream(PLAN_STREAM) if e.type == DemoPlanned.__name__]
    return msgspec.convert(events[-1].data["plan"], DemoPlan) if events else None


def check_own_store(store: Store, recorded: DemoPlan | None) -> None:
    """Refuse a store that holds anything but a demo: its data is not the demo's to change."""
    if recorded is not None:
        return
    events = store.head_position()
    if events > 0:
        raise ConfigurationError(
            f"this store holds {events:,} event{'' if events == 1 else 's'} and no demo: the "
            "demo runs only on a fresh store or on its own (it would switch this one to "
            "virtual time and end its contracts); give another --db"
        )


def record_plan(url: str, plan: DemoPlan) -> None:
    """The demo's first transaction: the plan, checked against the store's simulation."""
    registry = MessageRegistry()
    registry.register(DemoPlanned)
    with open_store(url, registry) as store:
        recorded = load_plan(store)
        check_own_store(store, recorded)
        events = decide_plan(recorded, plan)
        simulation = load_simulation(store)
        if simulation is not None and simulation != plan.simulation:
            raise ConfigurationError(
                f"this store already runs the simulation {simulation}; use a fresh store"
            )
        if events:  # NO_STREAM: a demo recording its plan meanwhile makes this one fail
            store.append(PLAN_STREAM, events, NO_STREAM)


# -- setup ---------------------------------------------------------------------------------


def setup_done(store: Store, plan: DemoPlan) -> bool:
    stream = Customer.stream_id(plan.changed_customer)
    return any(e.type == CustomerCreditRatingChanged.__name__ for e in store.read_stream(stream))


def ensure_setup(
    runtime: Runtime, plan: DemoPlan, opened: Callable[[int], None] | None = None
) -> bool:
    """Register the customers, open the contracts, change the rating; False if done before.

    Idempotent: every command has its plan-derived command_id, so whatever a killed run
    already did is answered from the commands table and appends nothing.
    """
    if setup_done(runtime.store, plan):
        return False
    correlation = plan.command_id("setup")
    runtime.send_many([*plan.registrations()], correlation_id=correlation)
    done = 0
    for chunk in chunks(plan.openings(), SEND_CHUNK):
        runtime.send_many(chunk, correlation_id=correlation)
        done += len(chunk)
        if opened is not None:
            opened(done)
    runtime.send(plan.rating_change(), correlation_id=correlation)
    return True


def chunks(commands: Iterable[Command], size: int) -> Iterator[list[Command]]:
    chunk: list[Command] = []
    for command in commands:
        chunk.append(command)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- outcome -------------------------------------------------------------------------------


def outcome(runtime: Runtime, plan: DemoPlan) -> dict[str, Any]:
    """The batch's counts and every demo contract's status, read from the store."""
    progress = runtime.progress(plan.batch_id)
    statuses = {"active": 0, "pending": 0, "resigned": 0, "terminated": 0}
    for customer_id in plan.customer_ids:
        summary = customer_summary(runtime.store, customer_id)
        if summary is not None:
            statuses["active"] += summary.active
            statuses["pending"] += summary.pending
            statuses["resigned"] += summary.resigned
            statuses["terminated"] += summary.terminated
    still_open = plan.affected if progress is None else progress.pending + progress.in_flight
    return {
        "batch_id": plan.batch_id,
        "batch_status": "not started" if progress is None else progress.status,
        "contracts": plan.contracts,
        "customers": plan.customers,
        "changed_customer": plan.changed_customer,
        "affected": plan.affected,
        "untouched": plan.contracts - plan.affected,
        "reconfirmed": 0 if progress is None else progress.done,
        "terminated": 0 if progress is None else progress.failed,
        "skipped": 0 if progress is None else progress.skipped,
        "still_pending": still_open,
        "statuses": statuses,
    }
