"""Executing commands: synchronously for callers, in batches from the outbox for processes.

Idempotency is the `commands` table keyed by `command_id`: the row is written in the same
transaction as the events the command appends, so a re-sent command finds it and gets the
original result back, appending nothing.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from procession.aggregate import Aggregate
from procession.app import App
from procession.errors import CommandRejected, ConcurrencyError, NotFound, Skipped
from procession.ids import new_id
from procession.messages import Command
from procession.policy import Failure, Park, SkipMessage, consult
from procession.runtime import batches
from procession.runtime.envelope import load_meta, message_row, metadata
from procession.store.base import Store, Tx, encode_json
from procession.store.work import (
    ClaimedCommand,
    CommandStatus,
    ItemStatus,
    KnownCommand,
)
from procession.store.work import commands as outbox

RETRIES_ON_CONFLICT = 3
SentCommand = tuple[Command, dict[str, Any]]
"""A command a process step sent: (the command with its id, its metadata)."""


class CommandResult(msgspec.Struct, frozen=True):
    """What a command did: the events it appended and where the log stood after them."""

    command_id: str
    status: str
    events: int = 0
    streams: list[str] = msgspec.field(default_factory=list)
    position: int = 0
    duplicate: bool = False
    error: str | None = None


class HandlerRun:
    """A command handler's view of one transaction; caches aggregates it has loaded."""

    def __init__(self, tx: Tx, now: float, cache: dict[str, tuple[Any, int]]) -> None:
        self.tx = tx
        self.now = now
        self.cache = cache
        self.meta: dict[str, Any] = {}
        self.events = 0
        self.streams: list[str] = []
        self.replaced: dict[str, tuple[Any, int] | None] = {}
        """What this attempt changed in the cache (a failed attempt must not leave its
        states behind): each stream's entry before it, None where it had none."""

    def _cache(self, stream_id: str, loaded: tuple[Any, int]) -> None:
        if stream_id not in self.replaced:
            self.replaced[stream_id] = self.cache.get(stream_id)
        self.cache[stream_id] = loaded

    def undo(self) -> None:
        """Put back the cache entries of a failed attempt."""
        for stream_id, before in self.replaced.items():
            if before is None:
                self.cache.pop(stream_id, None)
            else:
                self.cache[stream_id] = before
        self.replaced = {}

    def load(self, aggregate: Aggregate[Any], aggregate_id: str) -> tuple[Any, int]:
        """The aggregate's state and version (0: it does not exist)."""
        stream_id = aggregate.stream_id(aggregate_id)
        cached = self.cache.get(stream_id)
        if cached is not None:
            return cached
        state, version = aggregate.initial, 0
        registry = self.tx.registry
        if aggregate.snapshot_every:
            snap = self.tx.row("get_snapshot", stream_id=stream_id)
            if snap is not None:
                version = int(snap[0])
                state = msgspec.json.decode(snap[1], type=type(aggregate.initial))
        for row in self.tx.read_stream_raw(stream_id, version):
            state = aggregate.evolve(state, registry.decode(row[3], row[4], row[5]))
            version = row[2]
        self._cache(stream_id, (state, version))
        self.tx.known_version(stream_id, version)
        return state, version

    def exists(self, aggregate: Aggregate[Any], aggregate_id: str) -> bool:
        return self.load(aggregate, aggregate_id)[1] > 0

    def require(self, aggregate: Aggregate[Any], aggregate_id: str) -> Any:
        state, version = self.load(aggregate, aggregate_id)
        if version == 0:
            raise NotFound(f"{aggregate.category} {aggregate_id} does not exist")
        return state

    def execute(self, aggregate: Aggregate[Any], aggregate_id: str, command: Command) -> int:
        """Decide on the aggregate's current state and append what it decided."""
        state, version = self.load(aggregate, aggregate_id)
        events = aggregate.decide(state, command)
        if not events:
            return version
        stream_id = aggregate.stream_id(aggregate_id)
        new_version = self.tx.append(
            stream_id,
            events,
            version,
            now=self.now,
            correlation_id=self.meta.get("correlation_id"),
            causation_id=self.meta.get("message_id"),
        )
        state = aggregate.fold(state, events)
        self._cache(stream_id, (state, new_version))
        every = aggregate.snapshot_every
        if every and new_version // every > version // every:
            self.tx.defer(
                "save_snapshot", stream_id=stream_id, version=new_version, state=encode_json(state)
            )
        self.events += len(events)
        self.streams.append(stream_id)
        return new_version


class AggregateCache:
    """Aggregate states at committed versions, kept from one transaction to the next, so a
    contract's fifth command does not decode and fold its first four events again.

    An entry is used only after checking, in the transaction that uses it and under the
    append lock, that its stream is still at that version (one `stream_versions` query for
    all of a stage's streams): another worker's or process's append makes it stale, and the
    stream is read again. Entries are stored only after a commit (`Tx.after_commit`), so a
    rolled-back state never enters. Bounded: the oldest entries go first. States are
    shared by reference with later handlers: aggregates must not change them in place
    (`decide` and `evolve` are pure, as `Aggregate` says).
    """

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self.entries: dict[str, tuple[Any, int]] = {}
        self._lock = threading.Lock()

    def get(self, stream_id: str) -> tuple[Any, int] | None:
        return self.entries.get(stream_id)

    def put(self, loaded: dict[str, tuple[Any, int]]) -> None:
        with self._lock:
            entries = self.entries
            for stream_id, entry in loaded.items():
                entries.pop(stream_id, None)  # to the young end
                entries[stream_id] = entry
            excess = len(entries) - self.size
            if excess > 0:
                for stream_id in list(itertools.islice(entries, excess)):
                    del entries[stream_id]


class CommandBus:
    def __init__(self, app: App, store: Store, now: Callable[[], float]) -> None:
        self.app = app
        self.store = store
        self.now = now
        self.aggregates = AggregateCache()
        self.record: list[tuple[str, str]] | None = None
        """When a list (metrics on): each command a stage ran appends its type and the
        status it ended in (done, rejected, pending again to retry, parked, skipped)."""

    def _recorded(self, command: Command | str, status: CommandStatus) -> None:
        if self.record is not None:
            name = command if isinstance(command, str) else type(command).__name__
            self.record.append((name, "retrying" if status == CommandStatus.PENDING else status))

    def _handle(self, run: HandlerRun, command: Command, meta: dict[str, Any]) -> None:
        handler = self.app.handlers.get(type(command))
        if handler is None:
            raise CommandRejected(f"no handler for command {type(command).__name__}")
        run.meta = meta
        for attempt in range(RETRIES_ON_CONFLICT + 1):
            run.events, run.streams, run.replaced = 0, [], {}
            try:
                with run.tx.savepoint():
                    handler(run, command)
                return
            except ConcurrencyError as exc:  # another worker appended first: reload, decide again
                run.undo()
                run.cache.pop(exc.stream_id, None)
                if attempt == RETRIES_ON_CONFLICT:
                    raise
            except Exception:
                run.undo()
                raise

    def send(
        self,
        command: Command,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> CommandResult:
        """Execute now, in one transaction; a command_id seen before returns its result."""
        return self.send_many([command], correlation_id, causation_id)[0]

    def send_many(
        self,
        commands: list[Command],
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> list[CommandResult]:
        """Execute commands in order in one transaction: all of them, or (if the domain
        rejects one) none. Each result's `position` is the log head after the whole batch."""
        commands = [
            c if c.command_id else msgspec.structs.replace(c, command_id=new_id()) for c in commands
        ]
        now = self.now()
        results: list[CommandResult] = []
        with self.store.transaction() as tx:
            tx.lock_appends()
            run = HandlerRun(tx, now, {})
            self.prefetch(run, commands)
            for command in commands:
                found = outbox.find(tx, command.command_id)
                if found is not None:
                    results.append(_previous(command.command_id, found))
                    continue
                meta = metadata(command.command_id, correlation_id, causation_id, now)
                run.events, run.streams = 0, []
                self._handle(run, command, meta)
                results.append(
                    CommandResult(
                        command.command_id, CommandStatus.DONE, run.events, list(run.streams)
                    )
                )
                row = message_row(tx.registry, command, meta)
                outbox.record(tx, command.command_id, CommandStatus.DONE, now, row)
            head = tx.head_position() if any(r.events for r in results) else 0
            results = [
                r if r.duplicate else msgspec.structs.replace(r, position=head if r.events else 0)
                for r in results
            ]
            outbox.finish_many(
                tx,
                [
                    {
                        "command_id": r.command_id,
                        "status": CommandStatus.DONE,
                        "result": encode_json(r),
                        "error": None,
                    }
                    for r in results
                    if not r.duplicate
                ],
            )
        return results

    def run_pending(self, limit: int = 500) -> int:
        """Execute up to `limit` due outbox commands in one transaction; return how many."""
        with self.store.transaction() as tx:
            return self.run_pending_in(tx, self.now(), limit)

    def run_pending_in(self, tx: Tx, now: float, limit: int = 500) -> int:
        claimed = outbox.claim(tx, now, limit)
        if claimed:
            tx.lock_appends()  # before loading aggregates: their versions are then final
        run = HandlerRun(tx, now, {})
        decoded: list[tuple[ClaimedCommand, Command, dict[str, Any]]] = []
        for row in claimed:
            try:
                command = tx.registry.decode(row.type, row.schema_version, row.data)
                assert isinstance(command, Command)
            except Exception as exc:
                self._fail(tx, row, None, exc, now)
                continue
            decoded.append((row, command, load_meta(row.metadata)))
        self.prefetch(run, [command for _, command, _ in decoded])
        for row, command, meta in decoded:
            try:
                run.events, run.streams = 0, []
                self._handle(run, command, meta)
            except CommandRejected as exc:
                self._finish(tx, row.command_id, meta, CommandStatus.REJECTED, None, exc)
                self._recorded(command, CommandStatus.REJECTED)
                continue
            except Exception as exc:  # its attempt left nothing in the cache (`_handle`)
                self._fail(tx, row, command, exc, now, meta)
                continue
            result = CommandResult(row.command_id, CommandStatus.DONE, run.events, run.streams)
            self._finish(tx, row.command_id, meta, CommandStatus.DONE, result, None)
            self._recorded(command, CommandStatus.DONE)
        return len(claimed)

    def takes_inline(self, command: Command) -> bool:
        """Whether a process step's command can run inside the step's transaction: its id
        is derived (a caller-chosen id may be sent twice: the outbox row deduplicates it)
        and this app handles its type."""
        return not command.command_id and type(command) in self.app.handlers

    def run_sent(self, tx: Tx, now: float, sent: list[SentCommand]) -> None:
        """Execute the commands a stage's steps sent, in the steps' own transaction.

        No outbox row is written for a command that succeeds: it commits with the step that
        sent it, so a redelivered step finds both done or neither (the exactly-once of the
        step is the command's), and its events carry its id as their causation. A command
        the domain rejects is recorded as rejected; one that fails otherwise goes to the
        outbox as a failed attempt, where its `on_error` policy retries or parks it. Each
        command stands alone, as in a batch the commands stage claims from the outbox: a
        failure delays no other command, not even a later one of the same instance (the
        outbox never held one command back for another that failed).
        """
        tx.lock_appends()  # before loading aggregates: their versions are then final
        run = HandlerRun(tx, now, {})
        self.prefetch(run, [command for command, _ in sent])
        for command, meta in sent:
            try:
                run.events, run.streams = 0, []
                self._handle(run, command, meta)
                self._recorded(command, CommandStatus.DONE)
            except CommandRejected as exc:
                self._settle(tx, command, meta, CommandStatus.REJECTED, str(exc), now)
            except Exception as exc:  # its first attempt: the policy decides, as from the outbox
                failure = Failure(
                    error=exc,
                    attempt=1,
                    first_failed_at=now,
                    message=command,
                    subject=f"command:{type(command).__name__}",
                )
                status, error, retry_at = self._decide(command, failure, now)
                self._settle(tx, command, meta, status, error, now, available_at=retry_at)

    def _settle(
        self,
        tx: Tx,
        command: Command,
        meta: dict[str, Any],
        status: CommandStatus,
        error: str,
        now: float,
        available_at: float | None = None,
    ) -> None:
        """The one row of an inline command that did not simply succeed."""
        self._recorded(command, status)
        row = message_row(tx.registry, command, meta)
        row.update(
            command_id=command.command_id,
            status=status,
            available_at=now if available_at is None else available_at,
            error=error,
            first_failed_at=None if status == CommandStatus.REJECTED else now,
        )
        outbox.record_attempted(tx, row)

    def prefetch(self, run: HandlerRun, commands: list[Command]) -> None:
        """Load every aggregate the batch's commands are routed to, in one query."""
        wanted: dict[str, Aggregate[Any]] = {}
        for command in commands:
            route = self.app.routes.get(type(command))
            if route is not None and not route[0].snapshot_every:
                stream_id = route[0].stream_id(route[1](command))
                if stream_id not in run.cache:
                    wanted[stream_id] = route[0]
        if not wanted:
            return
        tx = run.tx
        tx.after_commit(lambda: self.aggregates.put(run.cache))
        self.from_cache(run, wanted)
        if not wanted:
            return
        decode = tx.registry.decode
        states = {sid: (agg.initial, 0) for sid, agg in wanted.items()}
        ids = tx.store.backend.array_param(sorted(wanted))
        broken: set[str] = set()
        for _pos, stream_id, version, type_, schema_version, data, _meta in tx.rows(
            "read_streams", ids=ids
        ):
            if stream_id in broken:
                continue
            try:
                state = wanted[stream_id].evolve(
                    states[stream_id][0], decode(type_, schema_version, data)
                )
            except Exception:  # left to the command's own load, where it fails alone
                broken.add(stream_id)
                continue
            states[stream_id] = (state, version)
        for stream_id in broken:
            del states[stream_id]
        for stream_id, loaded in states.items():
            run.cache[stream_id] = loaded
            tx.known_version(stream_id, loaded[1])

    def from_cache(self, run: HandlerRun, wanted: dict[str, Aggregate[Any]]) -> None:
        """Take from the cache the states still at their stream's version (checked in this
        transaction, whose append lock is held); what is left in `wanted` must be read."""
        cached = {sid: c for sid in wanted if (c := self.aggregates.get(sid)) is not None}
        if not cached:
            return
        tx = run.tx
        tx.lock_appends()  # the versions read next are final until the commit
        current: dict[str, int] = dict(
            tx.rows("stream_versions", ids=tx.store.backend.array_param(sorted(cached)))
        )
        for stream_id, (state, version) in cached.items():
            if current.get(stream_id, 0) == version:
                run.cache[stream_id] = (state, version)
                tx.known_version(stream_id, version)
                del wanted[stream_id]

    def _finish(
        self,
        tx: Tx,
        command_id: str,
        meta: dict[str, Any],
        status: CommandStatus,
        result: CommandResult | None,
        error: CommandRejected | None,
    ) -> None:
        outbox.finish(
            tx,
            command_id,
            status,
            None if result is None else encode_json(result),
            None if error is None else str(error),
        )
        if "batch_id" in meta:
            outcome = ItemStatus.SKIPPED if isinstance(error, Skipped) else ItemStatus.FAILED
            batches.ack_item(
                tx,
                meta,
                outcome if error else None,
                str(error) if error else None,
                self.now(),
                events=0 if result is None else result.events,
            )

    def _fail(
        self,
        tx: Tx,
        row: ClaimedCommand,
        command: Command | None,
        exc: Exception,
        now: float,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """An unexpected error: the command type's `on_error` decides (by default retry with
        backoff, then park). One that cannot be decoded parks at once."""
        failure = Failure(
            error=exc,
            attempt=row.attempts + 1,
            first_failed_at=row.first_failed_at or now,
            last_error=row.error,
            message=command,
            subject=f"command:{row.type}",
        )
        status, error, retry_at = self._decide(command, failure, now)
        self._recorded(row.type, status)
        if status == CommandStatus.SKIPPED:
            outbox.finish(tx, row.command_id, CommandStatus.SKIPPED, None, error)
            if meta is not None and "batch_id" in meta:
                batches.ack_item(tx, meta, ItemStatus.SKIPPED, error, now)
            return
        parked = status == CommandStatus.PARKED
        outbox.failed(tx, row.command_id, error, parked=parked, retry_at=retry_at, now=now)

    def _decide(
        self, command: Command | None, failure: Failure, now: float
    ) -> tuple[CommandStatus, str, float]:
        """The command type's `on_error` on a failure: the status the command takes
        (skipped, parked or pending again), the error stored, and when it may run again.
        A command that could not be decoded has no policy: it parks."""
        hook = None if command is None else self.app.command_policy(type(command))
        decision, error = consult(hook, failure)
        if isinstance(decision, SkipMessage):
            return CommandStatus.SKIPPED, error, now
        if isinstance(decision, Park):
            return CommandStatus.PARKED, error, now
        return CommandStatus.PENDING, error, now + decision.delay.total_seconds()


def _previous(command_id: str, found: KnownCommand) -> CommandResult:
    if found.result:
        previous = msgspec.json.decode(found.result, type=CommandResult)
        return msgspec.structs.replace(previous, duplicate=True)
    return CommandResult(command_id, found.status, duplicate=True, error=found.error)
