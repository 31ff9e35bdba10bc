"""Worker liveness: a running worker says so every few seconds, and goodbye when it stops.

What `procession status`, the health API and the metrics show as live workers. Wall-clock
time throughout: a worker on a virtual clock is alive in real seconds. A heartbeat that fails
(the database away for a moment) is logged and tried at the next beat; it never stops the
worker, whose rounds have their own retries.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from procession.ids import new_id
from procession.policy import describe
from procession.store.base import Store, Tx
from procession.store.work import workers

log = logging.getLogger("procession")

HEARTBEAT_EVERY = 5.0
"""Seconds between two heartbeats of a worker."""
STALE_AFTER = 30.0
"""A worker not seen for this long is taken for gone (killed, or its host lost)."""


class Heartbeat:
    """One worker's presence in its store's `workers` table."""

    def __init__(self, store: Store, every: float = HEARTBEAT_EVERY) -> None:
        self.store = store
        self.every = every
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.worker_id = f"{self.host}:{self.pid}:{new_id()[-8:]}"
        self.rounds = 0
        self._next = 0.0

    def start(self) -> None:
        self._write(self._started)

    def _started(self, tx: Tx, now: float) -> None:
        workers.prune(tx, now)
        self._seen(tx, now)

    def beat(self) -> None:
        if time.monotonic() >= self._next:
            self._write(self._seen)

    def stop(self) -> None:
        self._write(self._stopped)

    def _stopped(self, tx: Tx, now: float) -> None:
        workers.stopped(tx, self.worker_id, now, self.rounds)

    def _seen(self, tx: Tx, now: float) -> None:
        workers.seen(tx, self.worker_id, self.host, self.pid, now, self.rounds)

    def _write(self, change: Callable[[Tx, float], None]) -> None:
        self._next = time.monotonic() + self.every
        try:
            with self.store.transaction() as tx:
                change(tx, time.time())
        except Exception as exc:
            log.warning(
                "worker heartbeat not recorded (tried again in %.0f s): %s",
                self.every,
                describe(exc),
            )


def listing(store: Store, stale_after: float = STALE_AFTER) -> list[dict[str, Any]]:
    """Every worker the store remembers (a day's worth), each `alive` if it has not stopped
    and was seen within `stale_after` seconds; the live ones first."""
    now = time.time()
    with store.transaction(write=False) as tx:
        rows = workers.listing(tx)
    found = [
        {
            "worker_id": r.worker_id,
            "host": r.host,
            "pid": r.pid,
            "started_at": r.started_at,
            "seen_at": r.seen_at,
            "stopped_at": r.stopped_at,
            "rounds": r.rounds,
            "alive": r.stopped_at is None and now - r.seen_at <= stale_after,
        }
        for r in rows
    ]
    return sorted(found, key=lambda w: not w["alive"])
