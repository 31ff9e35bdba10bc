"""The reference system on a virtual clock, driven and observed the way the tests need."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from credit_contracts.app import build_app
from credit_contracts.domain.messages import (
    ChangeCustomerCreditRating,
    OpenContract,
    RegisterCustomer,
)
from credit_contracts.simulator import SimulationConfig
from procession import RecordedEvent, Runtime, Store, VirtualClock, open_store


class System:
    """The reference system on one store, driven like a user would, observed through the log."""

    def __init__(self, url: str, simulation: SimulationConfig | None = None, **options: Any):
        self.store: Store = open_store(url)
        self.clock = VirtualClock()
        self.runtime = Runtime(build_app(simulation, **options), self.store, self.clock)

    def customer(self, customer_id: str, contracts: int = 0, rating: str = "AA") -> list[str]:
        """Register a customer with `contracts` contracts; return their ids."""
        self.runtime.send(
            RegisterCustomer(customer_id=customer_id, name=customer_id, rating=rating)
        )
        ids = [f"{customer_id}-c{i:03d}" for i in range(contracts)]
        self.open(customer_id, ids)
        return ids

    def open(self, customer_id: str, contract_ids: list[str]) -> None:
        for contract_id in contract_ids:
            self.runtime.send(OpenContract(contract_id=contract_id, customer_id=customer_id))

    def change(self, customer_id: str, rating: str) -> None:
        self.runtime.send(ChangeCustomerCreditRating(customer_id=customer_id, new_rating=rating))

    def run(self) -> Any:  # RunStats, which procession does not export
        return self.runtime.run_until_idle()

    def events(self, *types: str) -> list[RecordedEvent]:
        return [e for e in self.store.read_all() if not types or e.type in types]

    def of_contract(self, contract_id: str, *types: str) -> list[RecordedEvent]:
        return [
            e
            for e in self.store.read_stream(f"Contract-{contract_id}")
            if not types or e.type in types
        ]

    def close(self) -> None:
        self.store.close()


def at(event: RecordedEvent) -> float:
    """The event's time, seconds since the epoch."""
    return datetime.fromisoformat(event.metadata["occurred_at"]).timestamp()
