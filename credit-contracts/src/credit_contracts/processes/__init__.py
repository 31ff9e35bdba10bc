"""Two process managers, linked by correlation (DESIGN §1).

`CreditChangeProcessor` owns the batch of one rating change; `ContractConfirmationProcessor`
owns one contract's re-sign / re-confirm lifecycle. Neither knows the other's type: the
batch learns each contract's end from outcome events, and the parent learns the batch's end
from one `BatchCompleted`.
"""

from __future__ import annotations

from credit_contracts.processes.contract_confirmation import ContractConfirmationProcessor
from credit_contracts.processes.credit_change import CreditChangeProcessor

__all__ = ["ContractConfirmationProcessor", "CreditChangeProcessor"]
