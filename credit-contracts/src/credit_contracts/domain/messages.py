"""Commands (intents) and events (facts) of customers and contracts.

Every contract event carries its `customer_id`, so read models need no lookups; the
relationship never changes. "Before" and "after" between a rating change and a re-signature
are log positions, never clock readings: positions are unique and totally ordered, where two
messages may well share an instant.
"""

from __future__ import annotations

from procession import Command, Event, Message

# -- customer ------------------------------------------------------------------------------


class RegisterCustomer(Command, frozen=True, kw_only=True):
    customer_id: str
    name: str
    rating: str


class ChangeCustomerCreditRating(Command, frozen=True, kw_only=True):
    customer_id: str
    new_rating: str


class CompleteCreditChange(Command, frozen=True, kw_only=True):
    """Sent by the CreditChangeProcessor when the batch of a rating change has finished."""

    customer_id: str
    change_no: int
    batch_id: str
    reconfirmed: int
    terminated: int
    skipped: int


class CustomerRegistered(Event, frozen=True, kw_only=True):
    customer_id: str
    name: str
    rating: str


class CustomerCreditRatingChanged(Event, frozen=True, kw_only=True):
    customer_id: str
    old_rating: str
    new_rating: str
    change_no: int
    """1, 2, ... per customer: the process derives a deterministic batch id from it."""


class CreditChangeCompleted(Event, frozen=True, kw_only=True):
    customer_id: str
    change_no: int
    batch_id: str
    reconfirmed: int
    terminated: int
    skipped: int


# -- contract ------------------------------------------------------------------------------


class OpenContract(Command, frozen=True, kw_only=True):
    contract_id: str
    customer_id: str
    title: str = ""


class RevokeCustomerContract(Command, frozen=True, kw_only=True):
    """One item of a credit-change batch: put an active contract back to pending."""

    contract_id: str
    customer_id: str
    change_no: int
    change_position: int
    """The rating change's log position: a contract re-signed after it is not revoked again."""


class RequestResignature(Command, frozen=True, kw_only=True):
    contract_id: str


class SendReminder(Command, frozen=True, kw_only=True):
    contract_id: str
    n: int


class SignContract(Command, frozen=True, kw_only=True):
    """The customer re-signs a pending contract."""

    contract_id: str


class ReconfirmContract(Command, frozen=True, kw_only=True):
    contract_id: str
    resigned_position: int = 0
    """The log position of the re-signature (0: unknown, taken as before any rating change)."""


class TerminateContract(Command, frozen=True, kw_only=True):
    contract_id: str
    reason: str


class ContractOpened(Event, frozen=True, kw_only=True):
    contract_id: str
    customer_id: str
    title: str = ""


class CustomerContractRevoked(Event, frozen=True, kw_only=True):
    contract_id: str
    customer_id: str
    change_no: int


class ContractResignatureRequested(Event, frozen=True, kw_only=True):
    contract_id: str
    customer_id: str


class ContractReminderSent(Event, frozen=True, kw_only=True):
    contract_id: str
    customer_id: str
    n: int


class ContractResigned(Event, frozen=True, kw_only=True):
    contract_id: str
    customer_id: str


class CustomerContractReconfirmed(Event, frozen=True, kw_only=True):
    contract_id: str
    customer_id: str
    resigned_position: int


class ContractTerminated(Event, frozen=True, kw_only=True):
    contract_id: str
    customer_id: str
    reason: str


CUSTOMER_EVENTS: tuple[type[Message], ...] = (
    CustomerRegistered,
    CustomerCreditRatingChanged,
    CreditChangeCompleted,
)
CONTRACT_EVENTS: tuple[type[Message], ...] = (
    ContractOpened,
    CustomerContractRevoked,
    ContractResignatureRequested,
    ContractReminderSent,
    ContractResigned,
    CustomerContractReconfirmed,
    ContractTerminated,
)
