"""The narrow door through which user code reaches the engine's transaction.

A projection's handlers and a batch's target source run inside a transaction the engine
owns (its checkpoint, its deliveries, its savepoints). They get a `Session`: their own SQL
(`:name` parameters, portable across backends), and nothing of the engine's machinery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

Params = dict[str, Any]
Row = tuple[Any, ...]


class Session(Protocol):
    def sql(self, sql: str, params: Params | Sequence[Params] | None = None) -> list[Row]:
        """Run a statement now; its rows (none for a statement without a result set).

        A list of parameter mappings runs the statement once per mapping (executemany).
        Errors are raised, never swallowed.
        """
        ...

    def write(self, sql: str, params: Params | None = None) -> None:
        """A write whose result nobody reads: sent before the next read or the commit, in
        order with the engine's writes; consecutive identical statements go as one batch."""
        ...
