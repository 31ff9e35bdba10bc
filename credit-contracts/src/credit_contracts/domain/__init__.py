"""The domain: customers and contracts as pure decide/evolve aggregates, and their messages."""

from __future__ import annotations

from credit_contracts.domain.contract import Contract, ContractState
from credit_contracts.domain.customer import RATINGS, Customer, CustomerState

__all__ = ["RATINGS", "Contract", "ContractState", "Customer", "CustomerState"]
