"""The log's consumers (every projection and the router) fed from one read of each page.

Each consumer keeps its own checkpoint, committed with its writes in the same transaction,
so a rebuilt projection simply starts behind the others and catches up; in the steady state
they all sit at the same position and a page is read and decoded once, not once per reader.
On PostgreSQL each consumer is a singleton (a transaction-scoped advisory lock): with many
workers, whoever holds it feeds it, and the others skip it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from procession.projection import Projection
from procession.runtime.projector import Projector, checkpoint_name
from procession.runtime.router import CHECKPOINT as ROUTER
from procession.runtime.router import Router
from procession.store.base import Tx

Apply = Callable[[Tx, list[tuple[Any, ...]], float], None]


class LogConsumers:
    def __init__(self, router: Router, projector: Projector) -> None:
        self.consumers: dict[str, Apply] = {}
        for name, projection in projector.app.projections.items():
            self.consumers[checkpoint_name(name)] = _feed(projector, projection)
        self.consumers[ROUTER] = router.apply

    def run(self, tx: Tx, now: float, only: set[str] | None = None, limit: int = 1000) -> int:
        """Feed the next page to every consumer (or those in `only`); the rows consumed."""
        names = [n for n in self.consumers if only is None or n in only]
        mine = [n for n in names if tx.try_singleton(n)]
        if not mine:
            return 0
        saved: dict[str, int] = dict(tx.rows("all_checkpoints"))
        checkpoints = {n: int(saved.get(n, 0)) for n in mine}
        rows = tx.read_all_raw(min(checkpoints.values()) + 1, limit)
        fed = 0
        for name in mine:
            todo = [r for r in rows if r[0] > checkpoints[name]]
            if todo:
                self.consumers[name](tx, todo, now)
                tx.set_checkpoint(name, todo[-1][0])
                fed = max(fed, len(todo))
        return fed


def _feed(projector: Projector, projection: Projection) -> Apply:
    def apply(tx: Tx, rows: list[tuple[Any, ...]], now: float) -> None:
        projector.apply(tx, projection, rows)

    return apply
