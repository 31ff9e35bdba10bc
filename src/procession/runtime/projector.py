"""Catching projections up with the log, page by page, rows and checkpoint in one transaction."""

from __future__ import annotations

from typing import Any

from procession.app import App
from procession.projection import EventInfo, Projection
from procession.runtime.envelope import load_meta
from procession.store.base import Store, Tx


def checkpoint_name(projection: str) -> str:
    return f"projection:{projection}"


class Projector:
    def __init__(self, app: App) -> None:
        self.app = app
        self.names = {
            name: {app.messages.type_of_class(t).name for t in p.handlers}
            for name, p in app.projections.items()
        }

    def setup(self, store: Store) -> None:
        with store.transaction() as tx:
            tx.run("wait_singleton", name="projection-setup")  # workers starting together
            for projection in self.app.projections.values():
                projection.setup(tx)

    def run(self, tx: Tx, projection: Projection, limit: int = 1000) -> int:
        """Apply the next page of events to one projection; return how many were read."""
        key = checkpoint_name(projection.name)
        if not tx.try_singleton(key):
            return 0
        rows = tx.read_all_raw(tx.checkpoint(key) + 1, limit)
        self.apply(tx, projection, rows)
        if rows:
            tx.set_checkpoint(key, rows[-1][0])
        return len(rows)

    def apply(self, tx: Tx, projection: Projection, rows: list[tuple[Any, ...]]) -> None:
        wanted = self.names[projection.name]
        registry = tx.store.registry
        for position, stream_id, version, type_, schema_version, data, meta in rows:
            if type_ in wanted:
                event = registry.decode(type_, schema_version, data)
                projection.handle(
                    tx, event, EventInfo(position, stream_id, version, load_meta(meta))
                )

    def reset(self, tx: Tx, projection: Projection) -> None:
        """Empty a projection and rewind it to the start of the log (a full rebuild follows)."""
        projection.reset(tx)
        tx.run("delete_checkpoint", name=checkpoint_name(projection.name))
