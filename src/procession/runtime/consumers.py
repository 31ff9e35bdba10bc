"""The log's consumers (every projection and the router) fed from one read of each page.

Each consumer keeps its own checkpoint, committed with its writes in the same transaction,
so a rebuilt projection simply starts behind the others and catches up; in the steady state
they all sit at the same position and a page is read and decoded once, not once per reader.
On PostgreSQL each consumer is a singleton (a transaction-scoped advisory lock): with many
workers, whoever holds it feeds it, and the others skip it.

A failure stops one consumer at one event: its writes for the page are undone (its queued
writes are sent inside its savepoint, so a failing write is caught there too), the page is
applied again an event at a time up to the failing one, and its `on_error` decides (retry
later, park, or skip the event). The router and the other consumers go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from procession.app import App
from procession.messages import Message
from procession.policy import (
    DEFAULT_POLICY,
    Failure,
    OnError,
    Retry,
    SkipMessage,
    consult,
    describe,
)
from procession.runtime.projector import Projector, checkpoint_name
from procession.runtime.router import CHECKPOINT as ROUTER
from procession.runtime.router import Router
from procession.store.base import Tx
from procession.store.records import RawEvent
from procession.store.work import ConsumerFailure, consumers

Apply = Callable[[Tx, list[RawEvent], float], None]
log = logging.getLogger("procession")


class Consumer:
    def __init__(self, name: str, apply: Apply, on_error: OnError) -> None:
        self.name = name
        self.apply = apply
        self.on_error = on_error


class LogConsumers:
    def __init__(self, app: App, router: Router, projector: Projector) -> None:
        self.consumers: dict[str, Consumer] = {}
        for name, projection in app.projections.items():
            key = checkpoint_name(name)

            def apply(tx: Tx, rows: list[RawEvent], now: float, p: object = projection) -> None:
                projector.apply(tx, p, rows)  # type: ignore[arg-type]

            self.consumers[key] = Consumer(key, apply, projection.on_error)
        self.consumers[ROUTER] = Consumer(ROUTER, router.apply, DEFAULT_POLICY.decide)
        self.router = router
        self.registry = app.messages

    def run(self, tx: Tx, now: float, only: set[str] | None = None, limit: int = 1000) -> int:
        """Feed the next page to every consumer (or those in `only`); the rows consumed."""
        held = [n for n in self.consumers if (only is None or n in only) and tx.try_singleton(n)]
        if not held:
            return 0
        saved, failures = consumers.positions(tx)  # under the locks: not a stale park
        mine = [n for n in held if not _waiting(failures.get(n), now)]
        if not mine:
            return 0
        checkpoints = {n: saved.get(n, 0) for n in mine}
        rows = tx.read_all_raw(min(checkpoints.values()) + 1, limit)
        pages = {n: [r for r in rows if r[0] > checkpoints[n]] for n in mine}
        pages = {n: page for n, page in pages.items() if page}
        if not pages:
            return 0
        if self.all_at_once(tx, pages, failures, now):
            return max(len(page) for page in pages.values())
        return max(  # something failed: find what, one consumer at a time
            self.feed(tx, self.consumers[n], page, failures.get(n), now)
            for n, page in pages.items()
        )

    def all_at_once(
        self,
        tx: Tx,
        pages: dict[str, list[RawEvent]],
        failures: dict[str, ConsumerFailure],
        now: float,
    ) -> bool:
        """Every consumer's page in one savepoint, its writes sent inside it: the usual case,
        one SAVEPOINT and (on PostgreSQL) one pipeline for the whole stage. False, with
        nothing of it left, if anything failed."""
        tx.flush()  # what was queued before is not ours
        handed = len(self.router.handed)
        try:
            with tx.savepoint():
                for name, page in pages.items():
                    consumer = self.consumers[name]
                    consumer.apply(tx, page, now)
                    self.passed(tx, consumer, page[-1][0], failures.get(name))
                tx.flush()
        except Exception:
            del self.router.handed[handed:]  # routed in what was undone
            return False
        return True

    def feed(
        self,
        tx: Tx,
        consumer: Consumer,
        rows: list[RawEvent],
        previous: ConsumerFailure | None,
        now: float,
    ) -> int:
        """Apply a page to one consumer, its writes sent inside its savepoint: a write that
        fails (a constraint, say) is this consumer's failure, found here, not at the commit
        of the whole stage. What was queued before is sent first: that is not ours."""
        tx.flush()
        try:
            self.apply(tx, consumer, rows, now)
        except Exception:
            return self.one_by_one(tx, consumer, rows, previous, now)
        self.passed(tx, consumer, rows[-1][0], previous)
        return len(rows)

    def apply(self, tx: Tx, consumer: Consumer, rows: list[RawEvent], now: float) -> None:
        """Rows applied to one consumer in a savepoint: all of them, or (raising) none."""
        handed = len(self.router.handed)
        try:
            with tx.savepoint():
                consumer.apply(tx, rows, now)
                tx.flush()
        except BaseException:
            del self.router.handed[handed:]  # routed in what was undone
            raise

    def one_by_one(
        self,
        tx: Tx,
        consumer: Consumer,
        rows: list[RawEvent],
        previous: ConsumerFailure | None,
        now: float,
    ) -> int:
        """The page failed: apply it again an event at a time, keeping the events that pass,
        to find the one that fails (a handler that raises, or a write it queued)."""
        for index, row in enumerate(rows):
            try:
                self.apply(tx, consumer, [row], now)
            except Exception as exc:
                if index:
                    tx.set_checkpoint(consumer.name, rows[index - 1][0])
                self.failed(tx, consumer, row, exc, previous, now)
                return index or 1
        self.passed(tx, consumer, rows[-1][0], previous)  # it failed only the first time
        return len(rows)

    def passed(
        self, tx: Tx, consumer: Consumer, position: int, previous: ConsumerFailure | None
    ) -> None:
        tx.set_checkpoint(consumer.name, position)
        if previous is not None:
            consumers.clear_failure(tx, consumer.name)

    def failed(
        self,
        tx: Tx,
        consumer: Consumer,
        row: RawEvent,
        error: Exception,
        previous: ConsumerFailure | None,
        now: float,
    ) -> None:
        """The consumer stops at this event; its `on_error` decides what comes next."""
        position = row[0]
        same = previous is not None and previous.position == position
        failure = Failure(
            error=error,
            attempt=previous.attempts + 1 if same and previous else 1,
            first_failed_at=previous.first_failed_at if same and previous else now,
            last_error=previous.error if same and previous else None,
            message=self.decoded(row),
            subject=consumer.name,
        )
        decision, stored = consult(consumer.on_error, failure)
        log.warning(
            "%s failed at position %d (attempt %d): %s",
            consumer.name,
            position,
            failure.attempt,
            describe(error),
        )
        if isinstance(decision, SkipMessage):
            tx.set_checkpoint(consumer.name, position)
            consumers.clear_failure(tx, consumer.name)
            return
        delay = decision.delay if isinstance(decision, Retry) else timedelta()
        consumers.record_failure(
            tx,
            consumer.name,
            position,
            failure.attempt,
            stored,
            parked=not isinstance(decision, Retry),
            until=now + delay.total_seconds(),
            now=failure.first_failed_at,
        )

    def decoded(self, row: RawEvent) -> Message | None:
        try:
            return self.registry.decode(row[3], row[4], row[5])
        except Exception:
            return None


def _waiting(failure: ConsumerFailure | None, now: float) -> bool:
    """A consumer parked, or waiting out a retry, is not fed this round."""
    return failure is not None and (bool(failure.parked) or failure.until > now)
