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


class FailedAt(Exception):
    """A log consumer failed on the event at `position` (the cause is `__cause__`)."""

    def __init__(self, position: int, index: int, error: Exception) -> None:
        super().__init__(f"at position {position}: {error}")
        self.position = position
        self.index = index
        self.error = error


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
        """Apply rows in order; a failure is raised as `FailedAt` naming its event."""
        wanted = self.names[projection.name]
        registry = tx.registry
        session = tx.session
        for index, (position, stream_id, version, type_, schema_version, data, meta) in enumerate(
            rows
        ):
            if type_ not in wanted:
                continue
            try:
                event = registry.decode(type_, schema_version, data)
                projection.handle(
                    session, event, EventInfo(position, stream_id, version, load_meta(meta))
                )
            except Exception as exc:
                raise FailedAt(position, index, exc) from exc

    def reset(self, tx: Tx, projection: Projection) -> None:
        """Empty a projection and rewind it to the start of the log (a full rebuild follows)."""
        projection.reset(tx.session)
        consumers.forget(tx, checkpoint_name(projection.name))
