"""Executing commands: synchronously for callers, in batches from the outbox for processes.

Idempotency is the `commands` table keyed by `command_id`: the row is written in the same
transaction as the events the command appends, so a re-sent command finds it and gets the
original result back, appending nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from procession.aggregate import Aggregate
from procession.app import App
from procession.errors import CommandRejected, ConcurrencyError, NotFound, Skipped
from procession.ids import new_id
from procession.messages import Command
from procession.process import batch
from procession.runtime.envelope import load_meta, message_row, metadata
from procession.store.base import Store, Tx, encode_json

RETRIES_ON_CONFLICT = 3


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

    def load(self, aggregate: Aggregate[Any], aggregate_id: str) -> tuple[Any, int]:
        """The aggregate's state and version (0: it does not exist)."""
        stream_id = aggregate.stream_id(aggregate_id)
        cached = self.cache.get(stream_id)
        if cached is not None:
            return cached
        state, version = aggregate.initial, 0
        registry = self.tx.store.registry
        if aggregate.snapshot_every:
            snap = self.tx.row("get_snapshot", stream_id=stream_id)
            if snap is not None:
                version = int(snap[0])
                state = msgspec.json.decode(snap[1], type=type(aggregate.initial))
        for row in self.tx.read_stream_raw(stream_id, version):
            state = aggregate.evolve(state, registry.decode(row[3], row[4], row[5]))
            version = row[2]
        self.cache[stream_id] = (state, version)
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
        self.cache[stream_id] = (state, new_version)
        every = aggregate.snapshot_every
        if every and new_version // every > version // every:
            self.tx.defer(
                "save_snapshot", stream_id=stream_id, version=new_version, state=encode_json(state)
            )
        self.events += len(events)
        self.streams.append(stream_id)
        return new_version


class CommandBus:
    def __init__(self, app: App, store: Store, now: Callable[[], float]) -> None:
        self.app = app
        self.store = store
        self.now = now

    def _handle(self, run: HandlerRun, command: Command, meta: dict[str, Any]) -> None:
        handler = self.app.handlers.get(type(command))
        if handler is None:
            raise CommandRejected(f"no handler for command {type(command).__name__}")
        run.meta = meta
        for attempt in range(RETRIES_ON_CONFLICT + 1):
            cache = dict(run.cache)  # a failed attempt must not leave its states behind
            run.events, run.streams = 0, []
            try:
                with run.tx.savepoint():
                    handler(run, command)
                return
            except ConcurrencyError as exc:  # another worker appended first: reload, decide again
                run.cache.clear()
                run.cache.update(cache)
                run.cache.pop(exc.stream_id, None)
                if attempt == RETRIES_ON_CONFLICT:
                    raise
            except Exception:
                run.cache.clear()
                run.cache.update(cache)
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
                found = tx.row("find_command", command_id=command.command_id)
                if found is not None:
                    results.append(_previous(command.command_id, found))
                    continue
                meta = metadata(command.command_id, correlation_id, causation_id, now)
                run.events, run.streams = 0, []
                self._handle(run, command, meta)
                results.append(
                    CommandResult(command.command_id, "done", run.events, list(run.streams))
                )
                row = message_row(tx.store.registry, command, meta)
                tx.defer(
                    "insert_command",
                    command_id=command.command_id,
                    status="done",
                    available_at=now,
                    **row,
                )
            head = tx.head_position() if any(r.events for r in results) else 0
            results = [
                r if r.duplicate else msgspec.structs.replace(r, position=head if r.events else 0)
                for r in results
            ]
            tx.many(
                "finish_command",
                [
                    {
                        "command_id": r.command_id,
                        "status": "done",
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
        rows = tx.rows("claim_commands", now=now, limit=limit)
        if rows:
            tx.lock_appends()  # before loading aggregates: their versions are then final
        run = HandlerRun(tx, now, {})
        registry = tx.store.registry
        decoded: list[tuple[str, Command, dict[str, Any], int]] = []
        for command_id, type_, version, data, meta_text, attempts in rows:
            try:
                command = registry.decode(type_, version, data)
                assert isinstance(command, Command)
            except Exception as exc:
                self._fail(tx, command_id, attempts + 1, exc, now)
                continue
            decoded.append((command_id, command, load_meta(meta_text), attempts))
        self.prefetch(run, [command for _, command, _, _ in decoded])
        for command_id, command, meta, attempts in decoded:
            try:
                run.events, run.streams = 0, []
                self._handle(run, command, meta)
            except CommandRejected as exc:
                self._finish(tx, command_id, meta, "rejected", None, exc)
                continue
            except Exception as exc:
                run.cache.clear()
                self._fail(tx, command_id, attempts + 1, exc, now)
                continue
            result = CommandResult(command_id, "done", run.events, run.streams)
            self._finish(tx, command_id, meta, "done", result, None)
        return len(rows)

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
        decode = tx.store.registry.decode
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

    def _finish(
        self,
        tx: Tx,
        command_id: str,
        meta: dict[str, Any],
        status: str,
        result: CommandResult | None,
        error: CommandRejected | None,
    ) -> None:
        tx.defer_any(
            "finish_command",
            command_id=command_id,
            status=status,
            result=None if result is None else encode_json(result),
            error=None if error is None else str(error),
        )
        if "batch_id" in meta:
            outcome = "skipped" if isinstance(error, Skipped) else "failed"
            batch.ack_item(
                tx, meta, outcome if error else None, str(error) if error else None, self.now()
            )

    def _fail(self, tx: Tx, command_id: str, attempts: int, exc: Exception, now: float) -> None:
        """An unexpected error: retry with backoff, park after five attempts."""
        parked = attempts >= 5
        tx.defer_any(
            "retry_command",
            command_id=command_id,
            error=f"{type(exc).__name__}: {exc}",
            available_at=now + min(2 ** (attempts - 1), 300),
            status="parked" if parked else "pending",
        )


def _previous(command_id: str, found: tuple[Any, ...]) -> CommandResult:
    status, result, error, _type = found
    if result:
        previous = msgspec.json.decode(result, type=CommandResult)
        return msgspec.structs.replace(previous, duplicate=True)
    return CommandResult(command_id, status, duplicate=True, error=error)


def enqueue(tx: Tx, command: Command, meta: dict[str, Any], available_at: float) -> None:
    """Put a command in the outbox (a duplicate command_id is ignored)."""
    row = message_row(tx.store.registry, command, meta)
    tx.defer_any(
        "insert_command",
        command_id=command.command_id,
        status="pending",
        available_at=available_at,
        **row,
    )
