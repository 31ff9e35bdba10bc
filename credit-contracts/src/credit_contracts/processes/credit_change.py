"""CreditChangeProcessor: one instance per customer, owning the batch of a rating change.

Its state is one batch id, never the list of contracts: progress lives in the engine's
batch tables, and the process hears once, through `BatchCompleted`, that every contract of
the batch has been re-confirmed, terminated or skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from credit_contracts.domain.messages import (
    CompleteCreditChange,
    CustomerCreditRatingChanged,
    RevokeCustomerContract,
)
from procession import (
    BatchCompleted,
    Command,
    Complete,
    Message,
    ProcessManager,
    Route,
    StartBatch,
    StepContext,
    start,
)

SOURCE = "contracts_of_customer"
TEMPLATE = "revoke_contract"


class CreditChangeState(msgspec.Struct):
    change_no: int = 0
    batch_id: str | None = None
    """The batch of the latest change, while it runs."""
    superseded: list[str] = msgspec.field(default_factory=list)


def batch_id_for(customer_id: str, change_no: int) -> str:
    """Deterministic: a redelivered rating change starts the same batch, not a second one."""
    return f"credit-{customer_id}-{change_no}"


def revoke_template(contract_id: str, params: dict[str, Any]) -> Command:
    return RevokeCustomerContract(
        contract_id=contract_id,
        customer_id=params["customer_id"],
        change_no=params["change_no"],
        change_position=params["change_position"],
    )


class CreditChangeProcessor(ProcessManager[CreditChangeState]):
    name = "CreditChangeProcessor"
    state_type = CreditChangeState
    starts_batches = ((SOURCE, TEMPLATE),)

    def __init__(self, max_in_flight: int = 500, page_size: int = 500) -> None:
        self.max_in_flight = max_in_flight
        self.page_size = page_size

    def initial(self) -> CreditChangeState:
        return CreditChangeState()

    def interested(self, event: CustomerCreditRatingChanged) -> Route | None:
        """Routes (and, by its annotation, subscribes to) rating changes only."""
        if isinstance(event, CustomerCreditRatingChanged):
            return start(event.customer_id)
        return None

    def handle(self, state: CreditChangeState, message: Message, ctx: StepContext) -> Sequence[Any]:
        if isinstance(message, CustomerCreditRatingChanged):
            return [self.start_batch(state, message, ctx)]
        if isinstance(message, BatchCompleted) and message.batch_id == state.batch_id:
            return [completion(ctx.instance_id, state.change_no, message), Complete()]
        return []  # a superseded batch finishing: its contracts live on in the newer one

    def start_batch(
        self, state: CreditChangeState, event: CustomerCreditRatingChanged, ctx: StepContext
    ) -> StartBatch:
        assert ctx.position is not None, "a rating change is an event: it has a position"
        position = ctx.position
        return StartBatch(
            batch_id=batch_id_for(event.customer_id, event.change_no),
            source=SOURCE,
            template=TEMPLATE,
            fence=position,
            params={
                "customer_id": event.customer_id,
                "change_no": event.change_no,
                "change_position": position,
            },
            max_in_flight=self.max_in_flight,
            page_size=self.page_size,
            supersedes=state.batch_id,
        )

    def evolve(self, state: CreditChangeState, message: Message) -> CreditChangeState:
        if isinstance(message, CustomerCreditRatingChanged):
            superseded = [*state.superseded, state.batch_id] if state.batch_id else state.superseded
            return CreditChangeState(
                message.change_no, batch_id_for(message.customer_id, message.change_no), superseded
            )
        return state


def completion(customer_id: str, change_no: int, done: BatchCompleted) -> CompleteCreditChange:
    """Counts of the batch: done items were re-confirmed, failed ones terminated."""
    return CompleteCreditChange(
        customer_id=customer_id,
        change_no=change_no,
        batch_id=done.batch_id,
        reconfirmed=done.done,
        terminated=done.failed,
        skipped=done.skipped,
    )
