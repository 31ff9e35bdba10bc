"""PostgreSQL adapter: psycopg 3 with a connection pool.

Every transaction takes a pooled connection and commits on success. Work is claimed with
`FOR UPDATE SKIP LOCKED` inside the transaction that does it, so a worker that dies (even by
SIGKILL) releases its claims the moment PostgreSQL notices the broken connection: no lease
timers to tune, no work done twice.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from procession.errors import ReadOnlyStore, StoreUnavailable
from procession.limits import Limits
from procession.store.queries import to_pyformat

if TYPE_CHECKING:
    from procession.session import Params
    from procession.store.base import Cursor, Store

COPY_AT_LEAST = 64
"""Event inserts in groups this large go by COPY: ~5x executemany's rate, measured."""
_EVENT_INSERT = "INSERT INTO events (stream_id, version, type, schema_version, data, metadata)"
_COPY_EVENTS = "COPY events (stream_id, version, type, schema_version, data, metadata) FROM STDIN"


_GATE_SQL = "SELECT {}(hashtext(current_schema()), hashtext('procession:virtual-clock'))"
_MAINTAIN_LOCK = "SELECT {}(hashtext(current_schema()), hashtext('procession:maintenance'))"
_TRY_SINGLETON = "SELECT pg_try_advisory_xact_lock(hashtext(current_schema()), hashtext(%s))"
_WAIT_SINGLETON = "SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext(%s))"
# Gap-free reading (DESIGN §5). Identity values are drawn at INSERT time but become visible at
# COMMIT, so two concurrent appenders can commit positions out of order, and a reader that
# checkpoints "position > N" would silently skip the lower one. We serialise appenders with a
# table lock held to commit: positions then become visible strictly in order, and `read_all`
# stays a plain keyset scan that any external tool can reproduce. EXCLUSIVE mode blocks only
# other writers of `events`; readers are never blocked. The cost is one appending transaction
# at a time, which batching (hundreds of events a transaction) makes cheap. The xid8 /
# pg_snapshot_xmin alternative avoids the lock but makes the public cursor a pair
# (transaction id, position); we keep the simpler public contract.
_LOCK_APPENDS = "LOCK TABLE events IN EXCLUSIVE MODE"
_READ_ONLY = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
CONNECT_TIMEOUT = 10
"""Seconds a new session may take to connect, unless the URL says otherwise: a server that
does not answer at all (not even with a refusal) costs a failed round, not a hung worker."""
CHECK_IDLE_AFTER = 1.0
"""A pooled connection idle longer than this is checked (one round trip) before use; one in
steady use is not (a check per transaction cost the 10k scenario 13% on PostgreSQL). One
dropped within that second fails its transaction, and the worker retries the round."""
RECONNECT_TIMEOUT = 30.0
"""How long the pool retries (backing off: 1, 2, 4, ... s) to replace a lost connection
before it gives up and starts afresh on the next request. With its default, 5 minutes, the
retries drift up to two minutes apart, and a worker could come back that long after its
database did."""


NOTIFY_CHANNEL = "procession"
"""The channel of wake-ups (DESIGN §9). The payload is the schema the work is in: workers of
other schemas in the same database (tests, several stores) ignore it."""
_NOTIFY = "SELECT pg_notify('procession', current_schema())"
_WAKES = (
    "INSERT INTO events",
    "INSERT INTO commands",
    "INSERT INTO inbox",
    "INSERT INTO batch",  # batches and batch_items
)
"""Writes that make work due now for some worker: a transaction that sends one of them
notifies, once, when it commits (a NOTIFY is delivered on commit only, never on rollback).
A timer is due later, and a retry is found by polling, the source of truth: a notification
only spares an idle worker the rest of its poll interval."""
STOP_CHECK = 0.1
"""A worker waiting for a notification looks at its stop event this often (a signal does
not interrupt the wait on the socket)."""
NOTIFY_ENV = "PROCESSION_NOTIFY"


def notify_from_env() -> bool:
    """Wake-ups are on unless `PROCESSION_NOTIFY` is 0, false, off or no: the escape hatch,
    and the "before" of bench/latency.py. Off, workers neither notify nor listen."""
    return os.environ.get(NOTIFY_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def _connect_kwargs(url: str) -> dict[str, Any]:
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        given = {}
    return {} if "connect_timeout" in given else {"connect_timeout": CONNECT_TIMEOUT}


_MISCONFIGURED = (
    "password authentication failed",
    "no password supplied",
    "does not exist",  # the role or the database
    "no pg_hba.conf entry",
)


def misconfigured(exc: BaseException) -> bool:
    """A wrong password, role or database name: no wait mends it."""
    return any(text in str(exc) for text in _MISCONFIGURED)


def connection_fault(exc: BaseException) -> bool:
    """Whether `exc` says the database was not there: a connection refused, dropped or
    terminated, or none to be had from the pool in time. Such a failure is worth trying
    again later; any other (an error in the SQL, a constraint, a misconfiguration) is not."""
    if misconfigured(exc):
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | PoolTimeout)


def _safe(url: str) -> str:
    """The URL without its password, for error messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the PostgreSQL URL"
    host, db = info.get("host", "localhost"), info.get("dbname", "")
    return f"postgresql://{info.get('user', '')}@{host}:{info.get('port', 5432)}/{db}"


def _release(conn: psycopg.Connection[Any], unlock: str) -> None:
    """Give a session lock back; a connection that broke meanwhile took its locks with it
    (the error that broke it is the one worth reporting, and it is raised elsewhere)."""
    if conn.closed or conn.broken:
        return
    try:
        conn.execute(unlock)
    except psycopg.OperationalError:
        if not conn.broken:
            raise


class PostgresCoordination:
    """Any number of workers on one database: claims use SKIP LOCKED (in the queries), roles
    and the virtual-time gate use advisory locks, and each stage commits on its own so claims
    and the append lock are held briefly."""

    limits = Limits()
    others_may_work = True

    def __init__(self, url: str, readonly: bool = False) -> None:
        self.url = url
        self.readonly = readonly
        self._gate: psycopg.Connection[Any] | None = None

    def lock_appends(self, cursor: Cursor) -> None:
        cursor.execute(_LOCK_APPENDS)

    def try_singleton(self, cursor: Cursor, name: str) -> bool:
        cursor.execute(_TRY_SINGLETON, (name,))
        row = cursor.fetchone()
        return bool(row and row[0])

    def wait_singleton(self, cursor: Cursor, name: str) -> None:
        cursor.execute(_WAIT_SINGLETON, (name,))
        cursor.fetchone()

    def round(self, store: Store) -> AbstractContextManager[Any]:
        return nullcontext()

    @contextmanager
    def shared_round(self) -> Iterator[None]:
        """Held by every worker round while virtual time is shared (see exclusive_round)."""
        conn, _ = self._on_gate(_GATE_SQL.format("pg_advisory_lock_shared"))
        try:
            yield
        finally:
            _release(conn, _GATE_SQL.format("pg_advisory_unlock_shared"))

    def hold_gate(self, cursor: Cursor) -> None:
        """The gate, shared, for the rest of this work transaction, on its own session.

        `shared_round`'s lock lives on the gate session, apart from the sessions that do the
        work, and the two end separately: a worker killed (or its gate session terminated)
        may lose its gate while a work transaction of its is still open, holding the rows it
        claimed (FOR UPDATE). Another worker could then take the gate alone, skip those
        locked rows, find nothing ready and move the clock: the claimed work, rolled back a
        moment later, would run at a later virtual instant than it was due at (found by the
        chaos test, tests/chaos). Held by the work transaction itself, the gate is released
        exactly when that transaction's locks are.
        """
        cursor.execute(_GATE_SQL.format("pg_advisory_xact_lock_shared"))

    @contextmanager
    def exclusive_round(self) -> Iterator[bool]:
        """True if no other worker is inside a round, and none can start one until exit.

        A worker may move a shared virtual clock only then: work another worker is still
        committing would otherwise run at a later virtual time than it was caused at.
        """
        conn, row = self._on_gate(_GATE_SQL.format("pg_try_advisory_lock"))
        alone = bool(row and row[0])
        try:
            yield alone
        finally:
            if alone:
                _release(conn, _GATE_SQL.format("pg_advisory_unlock"))

    def maintain(self) -> None:
        """Vacuum and analyse the work tables, if no other worker is doing it right now.

        They are queues: every claim walks an index from its oldest entry, and the entries of
        rows already consumed stay in it until a vacuum. Autovacuum visits a table at most
        once a minute, while a busy run consumes tens of thousands of rows in that time, so
        claims slowed down tenfold between its visits. Fresh statistics also keep the
        planner's claim plans right for tables whose size changes by the second.
        """
        conn, row = self._on_gate(_MAINTAIN_LOCK.format("pg_try_advisory_lock"))
        if not (row and row[0]):
            return
        try:
            conn.execute(
                "VACUUM (ANALYZE) inbox, timers, commands, blocked_instances, process_instances,"
                " batch_items, checkpoints"
            )
        finally:
            _release(conn, _MAINTAIN_LOCK.format("pg_advisory_unlock"))

    def _on_gate(self, sql: str) -> tuple[psycopg.Connection[Any], Any]:
        """Run a statement that takes a lock on the gate session: the session and the row.

        The session sits idle between rounds, so the server may have dropped it meanwhile
        (restarted, or an operator's pg_terminate_backend): that is found out only by using
        it. It held no lock then (the locks went with it), so the statement is run again on a
        new session; if that fails too, the round fails (the database is not there).
        """
        conn = self._gate_connection()
        try:
            return conn, conn.execute(sql).fetchone()
        except psycopg.OperationalError:
            if not conn.broken:
                raise
        conn = self._gate_connection()
        return conn, conn.execute(sql).fetchone()

    def _gate_connection(self) -> psycopg.Connection[Any]:
        """A session of its own: advisory session locks must outlive pooled transactions."""
        if self._gate is None or self._gate.closed or self._gate.broken:
            if self._gate is not None:
                self._gate.close()
            self._gate = psycopg.connect(self.url, autocommit=True, **_connect_kwargs(self.url))
            if self.readonly:
                self._gate.execute(_READ_ONLY)
        return self._gate

    def close(self) -> None:
        if self._gate is not None:
            self._gate.close()


def _read_only_session(conn: psycopg.Connection[Any]) -> None:
    """The pool's `configure`: every transaction of this session is READ ONLY."""
    conn.execute(_READ_ONLY)
    conn.commit()  # the pool takes a connection only when it is idle


class Wakeups:
    """An idle worker's wait on a LISTEN session of its own (DESIGN §9): it ends early when a
    transaction that made work due commits anywhere in this schema. Polling stays the truth:
    the wait never lasts longer than the poll interval it replaces, a lost notification
    costs at most that interval, and while the session is down the wait is a plain sleep.

    The session is opened (and `LISTEN` taken) at the first wait, and again at the first
    wait after it dropped (a restart, an operator's pg_terminate_backend). Notifications sent
    while nobody listened are lost, so a wait that has just (re)started listening returns at
    once: one more round finds what was committed in between.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._schema = ""

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Wait up to `timeout` s for a notification of this schema, or `stop`; whether one
        came (or listening just began). `timeout` 0 only drains what has arrived: a busy
        worker calls it so that its session's socket buffer never fills (a listener that
        stops reading holds up the server's notification queue for everyone)."""
        if self._conn is None:
            if timeout <= 0:
                return False
            if self._listen():
                return True
            stop.wait(timeout)  # no session: poll as without notifications
            return False
        conn = self._conn
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                for notify in conn.notifies(timeout=max(0.0, min(left, STOP_CHECK))):
                    if notify.payload == self._schema:
                        return True
                if stop.is_set() or left <= STOP_CHECK:
                    return False
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self._drop()
            return True  # the session dropped: look at once, listen again at the next wait

    def _listen(self) -> bool:
        try:
            conn = psycopg.connect(self.url, autocommit=True, **_connect_kwargs(self.url))
        except psycopg.Error:
            return False
        try:
            row = conn.execute("SELECT current_schema()").fetchone()
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error:
            conn.close()
            return False
        self._schema = str(row[0]) if row and row[0] is not None else ""
        self._conn = conn
        return True

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self._drop()


class PostgresBackend:
    name = "postgres"

    def __init__(
        self,
        url: str,
        pool_size: int = 4,
        *,
        readonly: bool = False,
        notify: bool | None = None,
    ) -> None:
        """`notify`: send and listen for wake-ups (DESIGN §9); by default on unless
        `PROCESSION_NOTIFY=0` (see `notify_from_env`)."""
        self.url = url
        self.readonly = readonly
        self.notify = notify_from_env() if notify is None else notify
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(f"cannot connect to {_safe(url)}: {reason}") from None
        # No `check=` here: `transaction` checks the connection it is given itself (the
        # pool's own check loop sleeps 1, 2, 4, ... s between two dead connections).
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": False, **_connect_kwargs(url)},
            reconnect_timeout=RECONNECT_TIMEOUT,
            configure=_read_only_session if readonly else None,
        )
        try:
            self.pool.open(wait=True, timeout=10)
        except Exception as exc:
            self.pool.close()
            raise StoreUnavailable(
                f"cannot open a connection pool to {_safe(url)}: {exc}"
            ) from None
        self.coordination = PostgresCoordination(url, readonly)
        self._used: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._waking: set[psycopg.Connection[Any]] = set()
        """Connections whose open transaction made work due: they notify at commit."""
        self.wakeups = Wakeups(url)

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Cursor]:
        try:
            with self._live_connection() as conn, conn.cursor() as cursor:
                try:
                    yield cursor
                    if conn in self._waking:
                        # in one round trip with the COMMIT: the wake-up costs no wait
                        with conn.pipeline():
                            cursor.execute(_NOTIFY)
                            conn.commit()
                finally:
                    self._waking.discard(conn)
        except psycopg.errors.ReadOnlySqlTransaction:
            if not self.readonly:
                raise
            raise ReadOnlyStore(
                f"the store {_safe(self.url)} was opened read-only: it cannot be written "
                "(open it without readonly=True to change it)"
            ) from None

    @contextmanager
    def _live_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection that answers. One the server dropped while it sat idle in the
        pool (a restart, an operator's pg_terminate_backend) is given back, to be discarded and
        replaced by the pool, and the next one is taken at once; a transaction fails only when
        no connection answers (the database is not there).

        The pool could check connections itself (`check=`), but between two dead ones it
        sleeps 1, 2, 4, ... s, and a new connection that waits that long for its turn is
        likely dead too when sessions keep being terminated: under repeated
        `pg_terminate_backend` a worker went 30 s at a time without a connection
        (`PoolTimeout`), round after round.
        """
        attempts = self.pool.max_size + 1  # every pooled connection may be dead (a restart)
        for attempt in range(attempts):
            with self.pool.connection() as conn:
                if time.monotonic() - self._used.get(conn, 0.0) > CHECK_IDLE_AFTER:
                    try:
                        ConnectionPool.check_connection(conn)
                    except psycopg.OperationalError:
                        if not conn.broken or attempt == attempts - 1:
                            raise
                        continue  # the pool discards it when it comes back broken
                try:
                    yield conn
                finally:
                    self._used[conn] = time.monotonic()
                return

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    def user_sql(self, sql: str) -> str:
        return to_pyformat(sql)

    def table_names(self, cursor: Cursor) -> set[str]:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {row[0] for row in cursor.fetchall()}

    def run_script(self, cursor: Cursor, script: str) -> None:
        cursor.execute(script)

    def array_param(self, values: list[str]) -> Any:
        return values

    def send_batch(self, cursor: Cursor, groups: list[tuple[str, list[Params]]]) -> int:
        """The groups in pipelines (one round trip instead of one per statement); a large
        group of event rows goes by COPY, which cannot run inside a pipeline."""
        connection = cursor.connection  # type: ignore[attr-defined]
        if (
            self.notify
            and connection not in self._waking
            and any(sql.startswith(_WAKES) for sql, _ in groups)
        ):
            self._waking.add(connection)
        pending: list[tuple[str, list[Params]]] = []
        trips = 0
        for sql, params in [*groups, ("", [])]:
            if sql and not (len(params) >= COPY_AT_LEAST and sql.startswith(_EVENT_INSERT)):
                pending.append((sql, params))
                continue
            if pending:
                try:
                    with connection.pipeline():
                        for psql, pparams in pending:
                            if len(pparams) == 1:
                                cursor.execute(psql, pparams[0])
                            else:
                                cursor.executemany(psql, pparams)
                except Exception:
                    _forget_prepared(connection)
                    raise
                pending = []
                trips += 1
            if sql:
                with cursor.copy(_COPY_EVENTS) as copy:  # type: ignore[attr-defined]
                    for row in params:
                        copy.write_row(row)
                trips += 1
        return trips

    def row_writes(self) -> int | None:
        return None  # pg_stat_* counts them, but only after commits, and for every session

    def wait_for_wakeup(self, timeout: float, stop: threading.Event) -> bool:
        """An idle worker's pause: until a transaction that made work due commits (a
        notification), `stop` is set, or `timeout` s pass. Whether it was woken."""
        if not self.notify:
            stop.wait(timeout)
            return False
        return self.wakeups.wait(timeout, stop)

    def close(self) -> None:
        self.wakeups.close()
        self.coordination.close()
        self.pool.close()


def _forget_prepared(connection: Any) -> None:
    """After a statement failed in a pipeline, the statements queued behind it were never
    parsed by the server, but psycopg may have recorded them as prepared: every later use of
    such a name would fail (`prepared statement "_pg3_N" does not exist`) for the life of the
    connection. Forget them all; psycopg sends DEALLOCATE ALL before its next statement."""
    prepared = getattr(connection, "_prepared", None)
    if prepared is not None:
        prepared.clear()
