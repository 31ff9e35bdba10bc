"""Applying pages of the log to projections, through a session (never the engine's Tx)."""

from __future__ import annotations

from procession.app import App
from procession.projection import EventInfo, Projection
from procession.runtime.envelope import load_meta
from procession.store.base import Store, Tx
from procession.store.records import RawEvent
from procession.store.work import consumers


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
            tx.wait_singleton("projection-setup")  # workers starting together
            for projection in self.app.projections.values():
                projection.setup(tx.session)

    def apply(self, tx: Tx, projection: Projection, rows: list[RawEvent]) -> None:
        """Apply rows in order (the log consumers find which event failed)."""
        wanted = self.names[projection.name]
        registry = tx.registry
        session = tx.session
        for position, stream_id, version, type_, schema_version, data, meta in rows:
            if type_ in wanted:
                event = registry.decode(type_, schema_version, data)
                projection.handle(
                    session, event, EventInfo(position, stream_id, version, load_meta(meta))
                )

    def reset(self, tx: Tx, projection: Projection) -> None:
        """Empty a projection and rewind it to the start of the log (a full rebuild follows)."""
        projection.reset(tx.session)
        consumers.forget(tx, checkpoint_name(projection.name))
