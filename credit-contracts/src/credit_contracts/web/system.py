"""What the HTTP layer needs from the running system: commands, runs, and batch listings.

One `WebSystem` per server. Commands go through `Runtime.send` (one transaction each; a
rejected command stores nothing), then wait until the read models have caught up with the
position the command reached, so the answer and every later read show its effect. Runs are
serialised by one lock: the runtime's loops are not meant to race each other inside one
process (worker processes on PostgreSQL are the way to scale out).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from credit_contracts.web.idempotency import Requests
from credit_contracts.web.security import Security
from procession import (
    BatchProgress,
    Command,
    CommandResult,
    Heartbeat,
    Runtime,
    Store,
    derived_id,
    operations,
)
from procession.states import ItemStatus

DAY = 24 * 3600.0
log = logging.getLogger(__name__)

ClockKind = Literal["system", "virtual"]


class ClockError(Exception):
    """A run asked to move a clock that cannot be moved."""


@dataclass
class WebSystem:
    runtime: Runtime
    clock: ClockKind
    security: Security = field(default_factory=Security)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: Requests = field(init=False)

    def __post_init__(self) -> None:
        self.requests = Requests(self.runtime.store)

    # -- commands --------------------------------------------------------------------------------

    def execute(self, command: Command, idempotency_key: str | None = None) -> CommandResult:
        """Execute now and wait for the read models; the same key twice executes once (the
        key, not the command's type: `Requests` refuses a key reused for another request)."""
        if idempotency_key:
            key = derived_id("http", idempotency_key)
            command = msgspec.structs.replace(command, command_id=key)
        result = self.runtime.send(command)
        if result.position:
            self.runtime.wait_for(result.position)
        return result

    # -- running ---------------------------------------------------------------------------------

    def run(self, advance_days: float | None = None) -> dict[str, Any]:
        """Process until idle; a virtual clock jumps to due timers (at most `advance_days`)."""
        if advance_days is not None and self.clock != "virtual":
            raise ClockError(
                "advance_days needs a virtual clock: this server runs on the system clock"
            )
        with self.lock:
            if advance_days is None:
                stats = self.runtime.run_until_idle()
                work, advances = stats.work, stats.clock_advances
            else:
                work, advances = self.run_for(advance_days * DAY)
        return {"work": work, "clock_advances": advances, **self.clock_state()}

    def run_for(self, seconds: float) -> tuple[int, int]:
        """Do what falls due between now and now + `seconds`, then leave the clock there."""
        stats = self.runtime.run_until(self.runtime.clock.now() + seconds)
        return stats.work, stats.clock_advances

    def work_forever(self, stop: threading.Event, idle_sleep: float = 0.2) -> None:
        """A background worker (`--worker`): small rounds under the run lock until stopped,
        listed among the store's live workers while it runs (a heartbeat, as every
        `procession worker`)."""
        heartbeat = Heartbeat(self.runtime.store)
        heartbeat.start()
        while not stop.is_set():
            heartbeat.beat()
            try:
                with self.lock:
                    busy = self.runtime.run_once()
            except Exception:  # a store hiccup must not kill the server's only worker
                log.exception("background worker round failed; retrying")
                busy = 0
            if busy:
                heartbeat.rounds += 1
            else:
                stop.wait(idle_sleep)
        heartbeat.stop()

    # -- reading ---------------------------------------------------------------------------------

    def clock_state(self) -> dict[str, Any]:
        now = self.runtime.clock.now()
        return {"clock": self.clock, "now": datetime.fromtimestamp(now, UTC).isoformat()}

    def batches(self, limit: int, after: str | None = None) -> list[BatchProgress]:
        """The most recent batches, newest first; `after`: the page after that batch."""
        return self.runtime.batches(limit, after)

    def close(self) -> None:
        self.runtime.store.close()


# -- operators: health, stuck work, batch items, totals ----------------------------------------
#
# Read-only SQL against the engine's tables and the read models, through `Session.sql` (user
# SQL, `:name` parameters) in a read transaction: the engine has no query for these yet.

ITEM_STATUSES = tuple(status.value for status in ItemStatus)
LIVE_BATCHES = ("enumerating", "running")


def health(runtime: Runtime) -> dict[str, Any]:
    """The log's head, each log consumer's checkpoint and lag, the queues, what is parked,
    and the workers the store has seen (each `alive` or not)."""
    summary = operations.status(runtime.store)
    now = runtime.clock.now()
    head = summary["head"]
    saved: dict[str, int] = summary["checkpoints"]
    names = sorted(set(runtime.log.consumers) | set(saved))
    with runtime.store.session() as session:
        due = session.sql("SELECT COUNT(*) FROM timers WHERE due_at <= :now", {"now": now})
    return {
        "backend": summary["backend"],
        "head": head,
        "consumers": [
            {"name": n, "checkpoint": saved.get(n, 0), "lag": max(head - saved.get(n, 0), 0)}
            for n in names
        ],
        "lag": max((head - saved.get(n, 0) for n in names), default=0),
        "queues": {
            "inbox": summary["inbox"],
            "commands_pending": summary["commands_pending"],
            "timers_due": int(due[0][0]),
            "timers": summary["timers"],
        },
        "parked": summary["parked"],
        "workers": summary["workers"],
    }


def stuck_contracts(
    store: Store, cutoff: str, after: str | None, limit: int
) -> tuple[list[tuple[Any, ...]], int]:
    """Pending contracts last changed before `cutoff` (ISO text, as the read model keeps it),
    a page by id, and how many there are. A scan of the read model: no index on status."""
    where = "status = 'pending' AND updated_at < :cutoff"
    with store.session() as session:
        rows = session.sql(
            "SELECT contract_id, customer_id, title, status, born_at, updated_at "
            f"FROM cc_contracts WHERE {where} AND contract_id > :after "
            "ORDER BY contract_id LIMIT :limit",
            {"cutoff": cutoff, "after": after or "", "limit": limit},
        )
        total = session.sql(f"SELECT COUNT(*) FROM cc_contracts WHERE {where}", {"cutoff": cutoff})
    return [tuple(r) for r in rows], int(total[0][0])


STALLED = (
    "FROM (SELECT b.batch_id AS batch_id, b.created_at AS created_at, "
    "(SELECT MAX(i.updated_at) FROM batch_items i WHERE i.batch_id = b.batch_id "
    "AND i.status IN ('done', 'failed', 'skipped')) AS finished_at "
    "FROM batches b WHERE b.status IN ('enumerating', 'running')) s "
    "WHERE COALESCE(s.finished_at, s.created_at) < :cutoff"
)
"""Live batches whose last finished item (else their start) is older than `:cutoff`: an
item's `updated_at` is the time of its last change, so a finished item's is when it
finished."""


def stalled_batches(
    store: Store, cutoff: float, after: str | None, limit: int
) -> tuple[list[tuple[str, float | None]], int]:
    with store.session() as session:
        rows = session.sql(
            f"SELECT s.batch_id, s.finished_at {STALLED} AND s.batch_id > :after "
            "ORDER BY s.batch_id LIMIT :limit",
            {"cutoff": cutoff, "after": after or "", "limit": limit},
        )
        total = session.sql(f"SELECT COUNT(*) {STALLED}", {"cutoff": cutoff})
    found = [(str(r[0]), None if r[1] is None else float(r[1])) for r in rows]
    return found, int(total[0][0])


def batch_items(
    store: Store, batch_id: str, status: str | None, after: str | None, limit: int
) -> tuple[list[tuple[Any, ...]], int]:
    """A page of a batch's items by target id (of one status, or all), and how many."""
    where = "batch_id = :batch_id" + (" AND status = :status" if status else "")
    params: dict[str, Any] = {"batch_id": batch_id}
    if status:
        params["status"] = status
    with store.session() as session:
        rows = session.sql(
            "SELECT target_id, status, detail, updated_at, dispatched_at FROM batch_items "
            f"WHERE {where} AND target_id > :after ORDER BY target_id LIMIT :limit",
            {**params, "after": after or "", "limit": limit},
        )
        total = session.sql(f"SELECT COUNT(*) FROM batch_items WHERE {where}", params)
    return [tuple(r) for r in rows], int(total[0][0])


def count(store: Store, sql: str, params: dict[str, Any] | None = None) -> int:
    with store.session() as session:
        return int(session.sql(sql, params or {})[0][0])


def superseded(store: Store, batch_id: str) -> list[str]:
    """The batches `batch_id` superseded (the other end of their `superseded_by`)."""
    with store.session() as session:
        rows = session.sql(
            "SELECT batch_id FROM batches WHERE superseded_by = :batch_id ORDER BY batch_id",
            {"batch_id": batch_id},
        )
    return [str(r[0]) for r in rows]
