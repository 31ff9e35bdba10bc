"""The store: one log of events plus the engine's work tables, in one database.

Both adapters share this code and the named queries; an adapter supplies connections,
transactions and its error mapping (see sqlite.py, postgres.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

import msgspec

from procession.errors import ConcurrencyError, SchemaError
from procession.ids import new_ids
from procession.messages import Message, MessageRegistry
from procession.session import Params, Row
from procession.store.coordination import Coordination
from procession.store.records import ANY, AppendResult, RecordedEvent

_json = msgspec.json.Encoder()
_decode = msgspec.json.decode
SCHEMA_MARK = "procession"
VIRTUAL_TIME_KEY = "virtual_clock"
"""The procession_meta key holding a virtual clock's current time: its presence makes the
store a virtual-time store (`Store.clock_kind`)."""
ClockKind = Literal["system", "virtual"]


class _Metadata(msgspec.Struct):
    """An event's metadata: encodes to the same JSON as the dict, several times faster."""

    message_id: str
    correlation_id: str
    causation_id: str | None
    occurred_at: str


_last_iso: tuple[float, str] = (float("nan"), "")


def iso(ts: float) -> str:
    """The ISO 8601 text of a timestamp; the last one is remembered (a stage stamps all
    its messages with one `now`). One tuple, swapped whole: safe across threads."""
    global _last_iso
    last = _last_iso
    if last[0] == ts:
        return last[1]
    text = datetime.fromtimestamp(ts, UTC).isoformat()
    _last_iso = (ts, text)
    return text


def encode_json(value: Any) -> str:
    return _json.encode(value).decode()


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    @property
    def description(self) -> Any: ...

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...
    def executemany(self, sql: str, params: Iterable[Any], /) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class Backend(Protocol):
    name: str
    url: str
    readonly: bool
    """Opened read-only: a write fails with `ReadOnlyStore` (see `open_store`)."""

    def transaction(self, write: bool = True) -> AbstractContextManager[Cursor]: ...
    def is_unique_violation(self, exc: BaseException) -> bool: ...
    def close(self) -> None: ...
    def user_sql(self, sql: str) -> str: ...
    def table_names(self, cursor: Cursor) -> set[str]: ...
    def run_script(self, cursor: Cursor, script: str) -> None: ...
    def send_batch(self, cursor: Cursor, groups: list[tuple[str, list[Params]]]) -> int:
        """Send the groups (each one statement and its rows); the round trips it took."""
        ...

    def row_writes(self) -> int | None:
        """Rows inserted, updated or deleted since the store was opened, if the backend
        counts them (SQLite does; PostgreSQL's counters lag behind commits)."""
        ...

    def array_param(self, values: list[str]) -> Any: ...
    def wait_for_wakeup(self, timeout: float, stop: threading.Event) -> bool:
        """An idle worker's pause: up to `timeout` s, less if `stop` is set or (PostgreSQL,
        DESIGN §9) a transaction that made work due commits. Whether it was woken. With
        `timeout` 0 it only takes in the wake-ups that have arrived."""
        ...

    @property
    def coordination(self) -> Coordination: ...


@dataclass
class Counters:
    """What a store has asked of its database since it was opened: the cost model of the
    benchmarks (`bench/scenario.py` reports them per stage and per contract).

    `statements` counts calls into the driver (an `executemany` of N rows is one),
    `executions` the statements the database ran (that `executemany` is N), and
    `round_trips` the waits for the database (a PostgreSQL pipeline is one; on SQLite every
    call is one, in process). Row writes are the backend's to count (`Backend.row_writes`).
    """

    statements: int = 0
    executions: int = 0
    round_trips: int = 0


@dataclass
class _Savepoint:
    mark: int
    loose_mark: int
    created: bool = False
    versions_before: dict[str, int | None] = field(default_factory=dict)
    """Stream versions its appends moved, as they were before (None: unknown then). Only
    appends make a known version wrong on undo: a version read is the database's, which
    the undo does not change for a stream this unit did not append to."""


_SAVEPOINT = "SAVEPOINT procession_step"
_RELEASE = "RELEASE SAVEPOINT procession_step"
R = TypeVar("R", bound=msgspec.Struct)
_CHECKED: set[tuple[type[Any], str]] = set()


def _check_columns(cls: type[Any], query: str, text: str, description: Any) -> None:
    """A record is read by column name: its fields must be the query's columns, in order."""
    columns = tuple(str(column[0]).lower() for column in description or ())
    if columns != tuple(cls.__struct_fields__):
        raise SchemaError(
            f"query {query!r} returns columns {columns}, not the fields of "
            f"{cls.__name__} {cls.__struct_fields__}"
        )
    _CHECKED.add((cls, text))  # by text: a backend's override of a name is checked too


def _grouped(ops: list[tuple[str, Params]]) -> list[tuple[str, Params]]:
    """Order-free writes, stably sorted so that each statement's rows are adjacent."""
    return sorted(ops, key=lambda op: op[0])


class _SavepointScope:
    __slots__ = ("appended", "locked", "sp", "tx")

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    def __enter__(self) -> None:
        tx = self.tx
        if tx._savepoint is not None:
            raise RuntimeError("savepoints do not nest")
        self.locked, self.appended = tx._appends_locked, tx._appended
        self.sp = tx._savepoint = _Savepoint(len(tx._deferred), len(tx._unordered))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        tx, sp = self.tx, self.sp
        try:
            if exc_type is None:
                if sp.created:  # its writes reached the database: finish them inside it
                    tx.flush()
            else:
                self._undo()
        except BaseException:
            self._undo()
            tx._savepoint = None
            raise
        tx._savepoint = None
        if exc_type is None and sp.created:  # sent with the next writes: no round trip
            tx._deferred.append((_RELEASE, {}))

    def _undo(self) -> None:
        tx, sp = self.tx, self.sp
        if sp.created:
            tx._deferred.clear()
            tx._unordered.clear()
            tx.cursor.execute("ROLLBACK TO SAVEPOINT procession_step")
            tx.cursor.execute("RELEASE SAVEPOINT procession_step")
        else:
            del tx._deferred[sp.mark :]
            del tx._unordered[sp.loose_mark :]
        for stream_id, version in sp.versions_before.items():  # its appends did not happen
            if version is None:
                tx._versions.pop(stream_id, None)
            else:
                tx._versions[stream_id] = version
        if tx._appends_locked and not self.locked:
            # the append lock was taken inside and the rollback released it (PostgreSQL):
            # versions read under it are no longer final; read them again under the next
            tx._versions.clear()
        tx._appends_locked, tx._appended = self.locked, self.appended
        sp.created = False


class Tx:
    """One open transaction, speaking in named queries.

    Writes whose result nobody reads (`defer`) are queued and sent together just before the
    next read or the commit: consecutive ones of the same statement as one `executemany`,
    and on PostgreSQL all of them in one pipeline, so a batch of steps costs a round trip
    or two instead of one per statement (DESIGN §8). Reads always see earlier writes.
    Queued writes hold their SQL text: a user's statement never enters the engine's named
    queries.
    """

    def __init__(self, store: Store, cursor: Cursor) -> None:
        self.store = store
        self.registry: MessageRegistry = store.registry
        """The registry of the store view this transaction is seen through."""
        self.cursor = cursor
        self._sql = store.sql
        self._versions: dict[str, int] = {}
        self._appends_locked = False
        self._stamp: str | None = None
        self._deferred: list[tuple[str, Params]] = []
        self._unordered: list[tuple[str, Params]] = []
        self._savepoint: _Savepoint | None = None
        self._counters = store._shared.counters
        self._after_commit: list[Callable[[], None]] = []
        self._appended = 0
        self._head_before: int | None = None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this transaction has committed (never if it rolls back):
        for caches that must hold committed state only. A joined transaction's callbacks
        wait for the outermost commit."""
        self._after_commit.append(callback)

    @property
    def coordination(self) -> Coordination:
        return self.store.backend.coordination

    @property
    def session(self) -> Session:
        """The narrow view of this transaction that user code (projections, sources) gets."""
        return Session(self)

    def _exec(self, query: str, params: Params | None) -> Cursor:
        self.flush()
        self.cursor.execute(self._sql[query], params or {})
        counters = self._counters
        counters.statements += 1
        counters.executions += 1
        counters.round_trips += 1
        return self.cursor

    def rows(self, query: str, /, **params: Any) -> list[Row]:
        return self._exec(query, params).fetchall()

    def row(self, query: str, /, **params: Any) -> Row | None:
        found: Row | None = self._exec(query, params).fetchone()
        return found

    def scalar(self, query: str, /, **params: Any) -> Any:
        found = self.row(query, **params)
        return None if found is None else found[0]

    def records(self, cls: type[R], query: str, /, **params: Any) -> list[R]:
        """The query's rows as records of `cls`, whose fields are named like its columns."""
        cursor = self._exec(query, params)
        rows = cursor.fetchall()
        if (cls, self._sql[query]) not in _CHECKED:
            _check_columns(cls, query, self._sql[query], cursor.description)
        return [cls(*row) for row in rows]

    def record(self, cls: type[R], query: str, /, **params: Any) -> R | None:
        found = self.records(cls, query, **params)
        return found[0] if found else None

    def run(self, query: str, /, **params: Any) -> int:
        """Write now and return the number of rows it touched."""
        self._savepoint_now()
        return self._exec(query, params).rowcount

    def defer(self, query: str, /, **params: Any) -> None:
        """Write later (before the next read or the commit), in order with other writes."""
        self._deferred.append((self._sql[query], params))

    def defer_any(self, query: str, /, **params: Any) -> None:
        """Write later, in any order: for writes that commute with every other write of the
        transaction (a delete by unique id, an insert that ignores conflicts, the one save of
        a row). They are grouped by statement, so N of them cost one executemany."""
        self._unordered.append((self._sql[query], params))

    def defer_row(self, query: str, params: Params) -> None:
        """`defer_any` with its parameters as one mapping (the hot paths build it anyway)."""
        self._unordered.append((self._sql[query], params))

    def defer_ordered(self, query: str, params: Params) -> None:
        """`defer` with its parameters as one mapping."""
        self._deferred.append((self._sql[query], params))

    def many(self, query: str, params: Sequence[Params]) -> None:
        """Deferred writes, one per parameter mapping."""
        text = self._sql[query]
        self._deferred.extend((text, p) for p in params)

    def flush(self) -> None:
        """Send every deferred write now."""
        if not self._deferred and not self._unordered:
            return
        ops, self._deferred = self._deferred, []
        loose, self._unordered = self._unordered, []
        sp = self._savepoint
        if sp is not None and not sp.created:  # writes inside a savepoint reach the database
            before = ops[: sp.mark] + _grouped(loose[: sp.loose_mark])
            ops, loose = ops[sp.mark :], loose[sp.loose_mark :]
            if before:
                self._send(before)
                self.cursor.execute(_SAVEPOINT)
            else:  # nothing to send first: the SAVEPOINT goes in the same batch (one trip)
                ops = [(_SAVEPOINT, {}), *ops]
            sp.created = True
        self._send(ops + _grouped(loose))

    def _savepoint_now(self) -> None:
        """An immediate write inside a savepoint: take the real SAVEPOINT before it."""
        sp = self._savepoint
        if sp is not None and not sp.created:
            self._send(self._deferred[: sp.mark] + _grouped(self._unordered[: sp.loose_mark]))
            del self._deferred[: sp.mark], self._unordered[: sp.loose_mark]
            sp.mark = sp.loose_mark = 0
            self.cursor.execute("SAVEPOINT procession_step")
            sp.created = True

    def _send(self, ops: list[tuple[str, Params]]) -> None:
        if not ops:
            return
        groups: list[tuple[str, list[Params]]] = []
        for text, params in ops:
            if groups and groups[-1][0] == text:
                groups[-1][1].append(params)
            else:
                groups.append((text, [params]))
        counters = self._counters
        counters.statements += len(groups)
        counters.executions += len(ops)
        counters.round_trips += self.store.backend.send_batch(self.cursor, groups)

    def write(self, sql: str, params: Params | None = None) -> None:
        """The caller's own write (`:name` parameters), deferred like the engine's: in order
        with other writes, consecutive identical statements sent as one executemany."""
        self._deferred.append((self.store.user_sql(sql), params or {}))

    def sql(self, sql: str, params: Params | Sequence[Params] | None = None) -> list[Row]:
        """Run the caller's own SQL (`:name` parameters) now; its rows, if it has any.

        A list of parameter mappings runs the statement once per mapping (executemany).
        """
        self._savepoint_now()  # it may write: inside a savepoint, it must be undoable
        self.flush()
        text = self.store.user_sql(sql)
        if isinstance(params, list | tuple):
            if params:
                self.cursor.executemany(text, params)
            return []
        self.cursor.execute(text, params or {})
        if self.cursor.description is None:  # a statement without a result set
            return []
        return self.cursor.fetchall()

    def savepoint(self) -> _SavepointScope:
        """A nested unit: on error, undo only what happened inside it, then re-raise.

        Costs nothing while the unit only defers writes (they are simply dropped on error);
        a real SAVEPOINT is taken only if the unit makes its writes reach the database.
        (A class, not a generator: two of these open per process step.)
        """
        return _SavepointScope(self)

    def snapshot(self) -> None:
        """Make every read of this (read-only) transaction see one snapshot."""
        self.run("repeatable_read")

    def lock_appends(self) -> None:
        """Take the append lock now, before reading what the appends depend on."""
        if not self._appends_locked:
            self._savepoint_now()
            self.flush()
            self.coordination.lock_appends(self.cursor)
            self._appends_locked = True

    def known_version(self, stream_id: str, version: int) -> None:
        """Record a stream version read under the append lock (spares a query at append)."""
        if self._appends_locked:
            self._versions[stream_id] = version

    # -- the log -----------------------------------------------------------------------------

    def stream_version(self, stream_id: str) -> int:
        known = self._versions.get(stream_id)
        if known is None:
            known = int(self.scalar("stream_version", stream_id=stream_id))
            self._versions[stream_id] = known
        return known

    def prefetch_versions(self, stream_ids: Iterable[str]) -> None:
        """The versions of many streams in one query, instead of one query (and, with deferred
        writes, one flush) per stream."""
        missing = [s for s in dict.fromkeys(stream_ids) if s not in self._versions]
        if len(missing) > 1:
            found: dict[str, int] = dict(
                self.rows("stream_versions", ids=self.store.backend.array_param(missing))
            )
            for stream_id in missing:
                self._versions[stream_id] = int(found.get(stream_id, 0))

    def append(
        self,
        stream_id: str,
        events: Sequence[Message],
        expected_version: int = ANY,
        *,
        now: float | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Append events to one stream; return the new stream version."""
        return self.append_many(
            [(stream_id, events, expected_version)],
            now=now,
            correlation_id=correlation_id,
            causation_id=causation_id,
            extra=extra,
        )[0]

    def append_many(
        self,
        appends: Sequence[tuple[str, Sequence[Message], int]],
        *,
        now: float | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> list[int]:
        """Append to many streams: one version query, one id draw, one group of inserts.

        Every expectation is checked before anything is queued, so a ConcurrencyError leaves
        the transaction as it was. Returns each append's new stream version.
        """
        self.lock_appends()
        if len(appends) > 1 or appends[0][0] not in self._versions:
            self.prefetch_versions(stream_id for stream_id, _, _ in appends)
        after: dict[str, int] = {}
        starts = []
        for stream_id, events, expected in appends:
            current = after.get(stream_id)
            if current is None:
                current = self.stream_version(stream_id)
            if expected != ANY and current != expected:
                raise ConcurrencyError(stream_id, expected, current)
            starts.append(current)
            after[stream_id] = current + len(events)
        stamp = iso(now) if now is not None else self._now_iso()
        ids = iter(new_ids(sum(len(events) for _, events, _ in appends)))
        encode = self.store.registry.encode
        rows: list[tuple[Any, ...]] = []
        versions = []
        for (stream_id, events, _), version in zip(appends, starts, strict=True):
            for event in events:
                name, schema_version, data = encode(event)
                message_id = next(ids)
                version += 1
                meta = _Metadata(message_id, correlation_id or message_id, causation_id, stamp)
                text = (
                    encode_json(meta)
                    if not extra
                    else encode_json(msgspec.structs.asdict(meta) | extra)
                )
                rows.append((stream_id, version, name, schema_version, data, text))
            versions.append(version)
        self.many("insert_event_row", rows)  # type: ignore[arg-type]  # positional rows
        self._appended += len(rows)
        sp = self._savepoint
        if sp is not None:
            before = sp.versions_before
            for stream_id in after:
                if stream_id not in before:
                    before[stream_id] = self._versions.get(stream_id)
        self._versions.update(after)
        return versions

    def _now_iso(self) -> str:
        """One clock reading per transaction: its events share one `occurred_at`."""
        if self._stamp is None:
            self._stamp = iso(self._stamp_time())
        return self._stamp

    def _stamp_time(self) -> float:
        if self.store._now is not None:
            return self.store._now()
        shared = self.store._shared
        if shared.virtual is False:
            return time.time()
        saved = self.get_meta(VIRTUAL_TIME_KEY)  # the store's own virtual time
        shared.virtual = saved is not None
        return time.time() if saved is None else float(saved)

    def read_stream_raw(self, stream_id: str, after: int = 0) -> list[Row]:
        return self.rows("read_stream", stream_id=stream_id, after=after)

    def read_all_raw(self, start: int, limit: int) -> list[Row]:
        return self.rows("read_all", start=start, limit=limit)

    def head_position(self) -> int:
        return int(self.scalar("head_position"))

    def log_position(self) -> int:
        """The position of the last event in the log, this transaction's appends included,
        read once (under the append lock) and then counted: no query, and no flush of the
        queued writes, each time it is asked. An append a savepoint undid is not counted
        (SQLite gives its positions back). On PostgreSQL its positions are used up, so the
        answer may then be low by as many: never high."""
        if self._head_before is None:
            self.lock_appends()  # positions written by others are final from here
            self._head_before = self.head_position() - self._appended
        return self._head_before + self._appended

    # -- small key/value and checkpoints -------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        value = self.scalar("get_meta", key=key)
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        self.run("set_meta", key=key, value=value)
        if key == VIRTUAL_TIME_KEY:
            self.store._shared.virtual = True

    def checkpoint(self, name: str) -> int:
        value = self.scalar("get_checkpoint", name=name)
        return 0 if value is None else int(value)

    def set_checkpoint(self, name: str, position: int) -> None:
        self.defer("set_checkpoint", name=name, position=position)

    def try_singleton(self, name: str) -> bool:
        """Hold the named singleton role for the rest of this transaction, if free."""
        self.flush()
        return self.coordination.try_singleton(self.cursor, name)

    def wait_singleton(self, name: str) -> None:
        """Hold the named singleton role for the rest of this transaction, waiting for it."""
        self.flush()
        self.coordination.wait_singleton(self.cursor, name)


def recorded(row: Row) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        stream_id=row[1],
        version=row[2],
        type=row[3],
        schema_version=row[4],
        data=_decode(row[5]),
        metadata=_decode(row[6]),
    )


class Session:
    """The narrow door of a transaction for user code (`procession.session.Session`)."""

    __slots__ = ("_tx",)

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def sql(self, sql: str, params: Params | Sequence[Params] | None = None) -> list[Row]:
        return self._tx.sql(sql, params)

    def write(self, sql: str, params: Params | None = None) -> None:
        self._tx.write(sql, params)


@dataclass
class _Shared:
    """What every view of one store shares: the backend, its queries, the open transaction
    of each thread (a nested `transaction()` joins it), and user SQL translated once."""

    backend: Backend
    sql: dict[str, str]
    local: threading.local = field(default_factory=threading.local)
    user_sql: dict[str, str] = field(default_factory=dict)
    virtual: bool | None = None
    """Whether the store runs on a virtual clock, once known (set by `Tx.set_meta`)."""
    counters: Counters = field(default_factory=Counters)


class Store:
    """The event store and work tables behind one URL. Open it with `procession.open_store`.

    A store carries the message registry it encodes with and the clock that stamps events.
    `using(registry=..., now=...)` gives a view of the same database with others (the runtime
    takes one for its app and clock), and leaves this store as it was.
    """

    def __init__(
        self,
        backend: Backend,
        sql: dict[str, str],
        registry: MessageRegistry | None = None,
        now: Callable[[], float] | None = None,
        *,
        _shared: _Shared | None = None,
    ) -> None:
        self._shared = _shared or _Shared(backend, sql)
        self.backend = backend
        self.sql = sql
        self.registry = registry or MessageRegistry()
        self._now = now

    def using(
        self, registry: MessageRegistry | None = None, now: Callable[[], float] | None = None
    ) -> Store:
        """A view of this store with another registry and/or clock (same database)."""
        return Store(
            self.backend,
            self.sql,
            registry or self.registry,
            now or self._now,
            _shared=self._shared,
        )

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def readonly(self) -> bool:
        """Opened with `open_store(url, readonly=True)`: every write raises `ReadOnlyStore`."""
        return self.backend.readonly

    @property
    def counters(self) -> Counters:
        """What this store (every view of it) has asked of the database since it opened."""
        return self._shared.counters

    def now(self) -> float:
        """The store's own time: its virtual clock's if it runs on one, else the system's."""
        if self._now is not None:
            return self._now()
        with self.transaction(write=False) as tx:
            return tx._stamp_time()

    @property
    def clock_kind(self) -> ClockKind:
        """ "virtual" once a virtual clock has run on this store (it stays so), else "system"."""
        with self.transaction(write=False) as tx:
            return "system" if tx.get_meta(VIRTUAL_TIME_KEY) is None else "virtual"

    def user_sql(self, sql: str) -> str:
        """A user's statement in the driver's parameter style, translated once."""
        cache = self._shared.user_sql
        text = cache.get(sql)
        if text is None:
            text = cache[sql] = self.backend.user_sql(sql)
        return text

    def transaction(self, write: bool = True) -> AbstractContextManager[Tx]:
        """A transaction. Inside another on the same thread, it joins that one (on every
        backend): its work commits or rolls back with the outer transaction.
        `write=False` lets SQLite read beside a writer."""
        current: Tx | None = getattr(self._shared.local, "tx", None)
        if current is not None:
            return _Joined(current, self)
        return _TxContext(self, write)

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A transaction seen as a `Session`: for reading read models from outside."""
        with self.transaction(write) as tx:
            yield tx.session

    def append(
        self,
        stream_id: str,
        events: Sequence[Message],
        expected_version: int = ANY,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> AppendResult:
        """Append events to a stream in one transaction.

        Raises `ConcurrencyError` when `expected_version` (a version, `NO_STREAM`, or `ANY`)
        does not match the stream.
        """
        with self.transaction() as tx:
            version = tx.append(
                stream_id,
                events,
                expected_version,
                correlation_id=correlation_id,
                causation_id=causation_id,
            )
            position = tx.head_position()
        return AppendResult(version=version, position=position)

    def append_batch(self, appends: Iterable[tuple[str, Sequence[Message], int]]) -> int:
        """Append to many streams in one transaction (all or nothing); return the head position."""
        with self.transaction() as tx:
            tx.append_many(list(appends))
            return tx.head_position()

    def read_stream(self, stream_id: str, from_version: int = 0) -> list[RecordedEvent]:
        """The events of one stream with version >= from_version, in order."""
        with self.transaction(write=False) as tx:
            rows = tx.read_stream_raw(stream_id, max(from_version - 1, 0))
        return [recorded(r) for r in rows]

    def read_all(
        self, from_position: int = 0, limit: int | None = None, page_size: int = 1000
    ) -> Iterator[RecordedEvent]:
        """Every event with position >= from_position, in global order (the audit API).

        Pages with a keyset on position, one short transaction per page, so it streams a log
        of any length in flat memory; `limit` caps the number of events yielded.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        start, left = from_position, limit
        while left is None or left > 0:
            size = page_size if left is None else min(page_size, left)
            with self.transaction(write=False) as tx:
                rows = tx.read_all_raw(start, size)
            for row in rows:
                yield recorded(row)
            if left is not None:
                left -= len(rows)
            if len(rows) < size:
                return
            start = rows[-1][0] + 1

    def head_position(self) -> int:
        with self.transaction(write=False) as tx:
            return tx.head_position()

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TxContext:
    def __init__(self, store: Store, write: bool) -> None:
        self.store = store
        self.write = write
        self._inner: AbstractContextManager[Cursor] | None = None
        self._tx: Tx | None = None

    def __enter__(self) -> Tx:
        self._inner = self.store.backend.transaction(self.write)
        self._tx = Tx(self.store, self._inner.__enter__())
        self.store._shared.local.tx = self._tx
        return self._tx

    def __exit__(self, *exc: Any) -> bool | None:
        assert self._inner is not None and self._tx is not None
        self.store._shared.local.tx = None
        if exc[0] is None:
            try:
                self._tx.flush()
            except BaseException as error:  # the deferred writes failed: roll back, re-raise
                self._inner.__exit__(type(error), error, error.__traceback__)
                raise
        result = self._inner.__exit__(*exc)
        if exc[0] is None:
            for callback in self._tx._after_commit:
                callback()
        return result


class _Joined:
    """A nested transaction: the open one itself (its queue, its version cache, its append
    lock), seen for the block through this store view's registry and clock. It takes no
    savepoint (as Django's `atomic(savepoint=False)`): an error propagates and the outer
    transaction decides; an error the caller catches inside leaves the block's writes in the
    outer transaction. A unit that must be undone alone uses `Tx.savepoint()`."""

    def __init__(self, outer: Tx, store: Store) -> None:
        self.outer = outer
        self.store = store
        self.was = outer.store

    def __enter__(self) -> Tx:
        self.outer.store, self.outer.registry = self.store, self.store.registry
        return self.outer

    def __exit__(self, *exc: Any) -> None:
        self.outer.store, self.outer.registry = self.was, self.was.registry


def check_schema(tables: set[str], marked: bool, ours: set[str]) -> None:
    """Refuse a database that holds someone else's tables under our names."""
    clash = sorted((ours - {"procession_meta"}) & tables)
    if clash and not marked:
        raise SchemaError(
            f"the database has tables procession would create ({', '.join(clash)}) "
            "but no procession_meta marker: it belongs to another application"
        )
