"""The composition root: one function wires the whole reference system.

    app = build_app(SimulationConfig(seed=7, never_sign=0.2))
    runtime = Runtime(app, open_store(url), VirtualClock())

or, for a store that may already hold a simulation (a restart after a crash):

    runtime = open_system(url, virtual=True)
"""

from __future__ import annotations

from typing import Any

from credit_contracts.domain.contract import Contract
from credit_contracts.domain.customer import Customer
from credit_contracts.domain.messages import (
    CONTRACT_EVENTS,
    CUSTOMER_EVENTS,
    ChangeCustomerCreditRating,
    CompleteCreditChange,
    ContractTerminated,
    CustomerContractReconfirmed,
    OpenContract,
    ReconfirmContract,
    RegisterCustomer,
    RequestResignature,
    RevokeCustomerContract,
    SendReminder,
    SignContract,
    TerminateContract,
)
from credit_contracts.processes.contract_confirmation import ContractConfirmationProcessor
from credit_contracts.processes.credit_change import (
    SOURCE,
    TEMPLATE,
    CreditChangeProcessor,
    batch_id_for,
    revoke_template,
)
from credit_contracts.simulator import (
    SIMULATION_ID,
    ConfigureSimulation,
    CustomerSimulator,
    Simulation,
    SimulationConfig,
    SimulationConfigured,
    load_simulation,
)
from credit_contracts.views.contracts_by_customer import ContractsByCustomer, contract_targets
from credit_contracts.views.customer_summary import CustomerSummaryView, customer_summary
from procession import (
    App,
    BatchProgress,
    Clock,
    Command,
    ConfigurationError,
    HandlerContext,
    NotFound,
    Runtime,
    SystemClock,
    VirtualClock,
    open_store,
)

APP_NAME = "credit_contracts"
CUSTOMER_COMMANDS: tuple[type[Command], ...] = (
    RegisterCustomer,
    ChangeCustomerCreditRating,
    CompleteCreditChange,
)
CONTRACT_COMMANDS: tuple[type[Command], ...] = (
    RevokeCustomerContract,
    RequestResignature,
    SendReminder,
    SignContract,
    ReconfirmContract,
    TerminateContract,
)


def customer_of(command: Any) -> str:
    return str(command.customer_id)


def contract_of(command: Any) -> str:
    return str(command.contract_id)


def open_contract(ctx: HandlerContext, command: OpenContract) -> None:
    """A contract is opened for an existing customer only (and belongs to it for life)."""
    if not ctx.exists(Customer, command.customer_id):
        raise NotFound(f"customer {command.customer_id} does not exist")
    ctx.execute(Contract, command.contract_id, command)


def build_app(
    simulation: SimulationConfig | None = None,
    *,
    max_in_flight: int = 500,
    page_size: int = 500,
) -> App:
    """The reference system; with `simulation`, simulated customers answer re-sign requests.

    `max_in_flight` and `page_size` tune the credit-change batches (revocations dispatched
    and not yet executed; targets enumerated per transaction).
    """
    app = App(APP_NAME)
    app.register(*CUSTOMER_EVENTS, *CONTRACT_EVENTS, SimulationConfigured)
    for command in CUSTOMER_COMMANDS:
        app.command(command, Customer, to=customer_of)
    for command in CONTRACT_COMMANDS:
        app.command(command, Contract, to=contract_of)
    app.command(OpenContract, handler=open_contract)
    app.command(ConfigureSimulation, Simulation, to=lambda c: SIMULATION_ID)
    for projection in (ContractsByCustomer(), CustomerSummaryView()):
        app.projection(projection)
    app.process(CreditChangeProcessor(max_in_flight=max_in_flight, page_size=page_size))
    app.process(ContractConfirmationProcessor())
    if simulation is not None:
        app.process(CustomerSimulator(simulation))
    app.target_source(SOURCE, contract_targets, projection=ContractsByCustomer.name)
    app.batch_template(TEMPLATE, revoke_template)
    app.batch_outcome(CustomerContractReconfirmed, target=lambda e: e.contract_id, outcome="done")
    app.batch_outcome(ContractTerminated, target=lambda e: e.contract_id, outcome="failed")
    return app


def customer_batches(runtime: Runtime, customer_id: str) -> list[BatchProgress]:
    """The progress of every credit-change batch of a customer, oldest first."""
    summary = customer_summary(runtime.store, customer_id)
    changes = 0 if summary is None else summary.rating_changes
    found = (runtime.progress(batch_id_for(customer_id, n)) for n in range(1, changes + 1))
    return [progress for progress in found if progress is not None]


def open_system(
    url: str,
    simulation: SimulationConfig | None = None,
    *,
    virtual: bool = False,
    clock: Clock | None = None,
    max_in_flight: int = 500,
) -> Runtime:
    """Open the store at `url` and wire the app to it, resuming a recorded simulation.

    A `simulation` given here is recorded in the store the first time; a later call without
    one (e.g. `credit-contracts run --db URL` after a SIGKILL) rebuilds the same simulation.
    A different simulation on a store that has one is refused. `virtual=True` runs on a
    durable virtual clock kept in the store.
    """
    store = open_store(url)
    try:
        recorded = load_simulation(store)
        if simulation is not None and recorded is not None and simulation != recorded:
            raise ConfigurationError(
                f"{url} already runs the simulation {recorded}; use a fresh store"
            )
        config = simulation or recorded
        if clock is None:
            clock = VirtualClock(store=store) if virtual else SystemClock()
        runtime = Runtime(build_app(config, max_in_flight=max_in_flight), store, clock)
        if config is not None and recorded is None:
            runtime.send(ConfigureSimulation(config=config))
    except BaseException:
        store.close()
        raise
    return runtime
