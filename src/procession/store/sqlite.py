"""SQLite adapter: the standard library's sqlite3, WAL, one writer at a time.

A SQLite store belongs to one process (DESIGN §9: PostgreSQL is the scale-out engine). Writes
use BEGIN IMMEDIATE so a transaction never has to upgrade its lock half way; reads use a
deferred transaction and run beside the writer thanks to WAL. A read-only store opens the
file `mode=ro` and creates nothing beside it (`SQLiteBackend._open_readonly`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from procession.errors import ReadOnlyStore, SchemaError, StoreUnavailable
from procession.limits import Limits

if TYPE_CHECKING:
    from procession.session import Params
    from procession.store.base import Cursor, Store


def check_file(path: str) -> None:
    """Refuse, before SQLite opens it, what cannot be a store: a directory or other
    non-file, or an empty file (SQLite would make a new database of it). A file that is
    not a SQLite database is refused at the first read (`not_a_database`).

    Only `os.stat`: a file this process opened and closed itself would release every POSIX
    lock the process holds on it, those of its SQLite connections to the store included (a
    writer elsewhere could then delete the WAL under them). SQLite's own opens do not."""
    try:
        found = os.stat(path)
    except OSError as exc:
        raise StoreUnavailable(f"cannot open {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(found.st_mode):
        raise StoreUnavailable(f"{path} is a directory, not a store")
    if not stat.S_ISREG(found.st_mode):
        raise StoreUnavailable(f"{path} is not a regular file, not a store")
    if found.st_size == 0:
        raise SchemaError(
            f"{path} is an empty file, not a procession store: remove it, or give a path "
            "that does not exist to create a new store"
        )


def not_a_database(path: str) -> SchemaError:
    return SchemaError(
        f"{path} is not a SQLite database, so not a procession store: give the path of a "
        "store, or a path that does not exist to create a new store"
    )


def log_maintenance_failure(path: str, exc: sqlite3.Error) -> None:
    logging.getLogger("procession").warning("WAL maintenance of %s failed: %s", path, exc)


def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    return sqlite3.connect(
        target, isolation_level=None, check_same_thread=False, timeout=30.0, uri=uri
    )


def _identity(path: str) -> tuple[int, int, int]:
    """What changes when the file is written or replaced."""
    found = os.stat(path)
    return found.st_ino, found.st_size, found.st_mtime_ns


def _probe(conn: sqlite3.Connection) -> None:
    """Read something: SQLite opens the file (and a WAL database's index) lazily."""
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()


def _is_readonly(exc: BaseException) -> bool:
    """SQLite refused to write (SQLITE_READONLY and its extended codes)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF == 8


def _reason(exc: sqlite3.Error) -> str:
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_READONLY_DIRECTORY":
        return (
            "its directory cannot be written (SQLite keeps a store's -wal and -shm files "
            "beside it); open it read-only to look at it (readonly=True)"
        )
    if _is_readonly(exc):
        return f"{exc} (the file or its directory is read-only)"
    return str(exc)


class SQLiteCoordination:
    """Nothing to coordinate: one process owns the store and BEGIN IMMEDIATE serialises its
    writers. Stages take big bites (nobody waits for their locks), and a whole round of them
    is one transaction, which spares a commit per stage."""

    limits = Limits(log_page=4000, instances=1000, commands=2000, timers=4000)
    others_may_work = False

    def __init__(self, backend: SQLiteBackend | None = None) -> None:
        # weak: a backend and its coordination must not form a cycle, or a store dropped
        # unclosed would keep its connection until the cyclic GC (tests/test_store_leaks.py)
        self._backend = None if backend is None else weakref.ref(backend)

    def lock_appends(self, cursor: Cursor) -> None:
        pass

    def try_singleton(self, cursor: Cursor, name: str) -> bool:
        return True

    def wait_singleton(self, cursor: Cursor, name: str) -> None:
        pass

    def round(self, store: Store) -> AbstractContextManager[Any]:
        return store.transaction()

    @contextmanager
    def shared_round(self) -> Iterator[None]:
        yield

    @contextmanager
    def exclusive_round(self) -> Iterator[bool]:
        yield True

    def hold_gate(self, cursor: Cursor) -> None:
        pass  # one process: its rounds are the only ones

    def maintain(self) -> None:
        """Keep the WAL bounded relative to the database (`SQLiteBackend.maintain_wal`).
        SQLite reuses freed pages at once and needs no vacuum for speed."""
        backend = None if self._backend is None else self._backend()
        if backend is not None:
            backend.maintain_wal()


WAL_WINDOW_MIN = 48 << 20
WAL_WINDOW_MAX = 400 << 20
"""How much WAL the automatic checkpoint lets accumulate: as much as the database itself, at
least 48 MiB, at most 400 MiB. A page rewritten many times within the window is copied back
and synced once (a larger window is faster: the 30k-contract scenario's commits took 7.5 s
with SQLite's 4 MB, 5.0 s with 400 MB), while the disk a run needs stays within about twice
the database (a fixed 400 MB window made a 14 MB store's WAL reach 190 MB)."""
WAL_KEPT = 64 << 20
"""`journal_size_limit`: what is left of a WAL file when a checkpoint resets it."""


def _wal_pages(db_pages: int, page_size: int) -> int:
    """The `wal_autocheckpoint` for a database of `db_pages` pages."""
    low, high = WAL_WINDOW_MIN // page_size, WAL_WINDOW_MAX // page_size
    return max(low, min(db_pages, high))


class SQLiteBackend:
    name = "sqlite"

    def __init__(self, url: str, path: str, *, readonly: bool = False) -> None:
        self.url = url
        self.path = path
        self.readonly = readonly
        self._seen: tuple[int, int, int] | None = None
        """The file as an `immutable=1` connection read it, else None (`_open_readonly`)."""
        self._lock = threading.RLock()
        self.coordination = SQLiteCoordination(self)
        self._wal_seen: tuple[int, int] | None = None
        """The -wal file's (size, mtime) at the last maintenance pass (`maintain_wal`)."""
        file = path != ":memory:"
        if file and os.path.lexists(path):
            check_file(path)
        if file and not readonly and os.path.exists(path) and not os.access(path, os.W_OK):
            raise StoreUnavailable(
                f"cannot open {path} to write: the file is read-only (permissions); "
                "open it read-only to look at it (readonly=True; `procession status` does)"
            )
        try:
            if file and readonly:
                self.conn, self._seen = self._open_readonly()
            else:
                self.conn = _connect(path)
                self._pragmas(path)
        except sqlite3.OperationalError as exc:  # before DatabaseError: it is a subclass
            raise StoreUnavailable(f"cannot open {url}: {_reason(exc)}") from None
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
                raise not_a_database(path) from None
            raise SchemaError(f"{url} is not a usable SQLite database: {exc}") from None
        except OSError as exc:  # the file's status
            raise StoreUnavailable(f"cannot open {url}: {exc.strerror or exc}") from None

    def _open_readonly(self) -> tuple[sqlite3.Connection, tuple[int, int, int] | None]:
        """A connection that cannot write and creates no file: `mode=ro`, no PRAGMA.

        SQLite reads a WAL database through its -shm index beside it, and a reader that
        finds none creates the -wal and -shm files (owned by the reader: a store's owner can
        then no longer write it), or fails when it cannot write the directory. So:

        - a writer has the store open (its -wal exists): `mode=ro` reads beside it, through
          its -wal and -shm, under SQLite's locks;
        - no writer has (no -wal): nothing can be changing the file, which is read as it is
          (`immutable=1`), creating nothing. A writer that starts later makes a -wal first:
          before each transaction, a -wal, or a file changed since it was opened, opens the
          connection again; after each, a file changed meanwhile (a writer copied its WAL
          into it) fails the transaction, as its reads may be torn (`_fresh`).

        A database in rollback-journal mode is read `mode=ro` (it has no -shm to make).
        """
        plain = f"file:{quote(self.path)}?mode=ro"
        for _ in range(10):
            if os.path.exists(self._wal) or not self._in_wal_mode():
                conn = _connect(plain, uri=True)
                seen = None
            else:
                seen = _identity(self.path)
                conn = _connect(plain + "&immutable=1", uri=True)
            try:
                _probe(conn)
            except sqlite3.Error as exc:
                conn.close()
                if getattr(exc, "sqlite_errorname", "") == "SQLITE_READONLY_DIRECTORY":
                    raise StoreUnavailable(
                        f"cannot read {self.path} read-only: it has a -wal file but no -shm "
                        "(a writer stopped without closing it) and its directory cannot be "
                        "written; open it read-write once, or from an account that may "
                        "write the directory"
                    ) from None
                raise
            if seen is None or (_identity(self.path) == seen and not os.path.exists(self._wal)):
                conn.execute("PRAGMA busy_timeout=30000")
                return conn, seen
            conn.close()  # a writer came meanwhile: look again
        raise StoreUnavailable(f"cannot read {self.path} read-only: it keeps changing")

    def _in_wal_mode(self) -> bool:
        """Whether the file is a WAL database, asked without making its -wal and -shm: a
        connection that takes no locks cannot open one (SQLITE_CANTOPEN: WAL needs its
        shared-memory index), and reads any other."""
        conn = _connect(f"file:{quote(self.path)}?mode=ro&nolock=1", uri=True)
        try:
            _probe(conn)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_CANTOPEN":
                return True
            raise
        finally:
            conn.close()
        return False

    @property
    def _wal(self) -> str:
        return self.path + "-wal"

    def _fresh(self, starting: bool) -> None:
        """An immutable connection reads a file no writer is changing: before a transaction,
        open it again if a writer appeared or the file changed; after one, fail it if the
        file changed meanwhile."""
        try:
            same = _identity(self.path) == self._seen
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc.strerror or exc}") from None
        if same and not (starting and os.path.exists(self._wal)):
            return
        if not starting:
            raise StoreUnavailable(
                f"{self.path} was written while it was being read read-only (a writer "
                "started meanwhile): what was read may be inconsistent; run again"
            )
        try:
            conn, seen = self._open_readonly()
        except (sqlite3.Error, OSError) as exc:
            reason = _reason(exc) if isinstance(exc, sqlite3.Error) else exc.strerror or exc
            raise StoreUnavailable(f"cannot read {self.path} read-only: {reason}") from None
        self.conn.close()
        self.conn, self._seen = conn, seen

    def _pragmas(self, path: str) -> None:
        run = self.conn.execute
        run("PRAGMA busy_timeout=30000")
        if path != ":memory:":
            for attempt in range(50):  # switching to WAL needs a moment alone with the file
                try:
                    run("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 49:
                        raise
                    time.sleep(0.05)
        run("PRAGMA synchronous=NORMAL")
        # Checkpoint (copy the WAL back and fsync) when the WAL holds as much as the database,
        # at least 48 MiB (SQLite's default is 4 MB): a page rewritten by many transactions in
        # between is copied and synced once. `maintain_wal` follows the database's size. A
        # checkpoint that completes lets the next writer start the WAL over, and
        # journal_size_limit then truncates the file: the WAL stays within about the window
        # plus one transaction (it was never truncated, and the window was a fixed 400 MB).
        page_size = run("PRAGMA page_size").fetchone()[0]
        db_pages = run("PRAGMA page_count").fetchone()[0]
        run(f"PRAGMA wal_autocheckpoint={_wal_pages(db_pages, page_size)}")
        run(f"PRAGMA journal_size_limit={WAL_KEPT}")
        run("PRAGMA cache_size=-65536")
        run("PRAGMA temp_store=MEMORY")
        run("PRAGMA busy_timeout=30000")

    def maintain_wal(self) -> None:
        """Between two transactions (every few seconds of a run): fit the checkpoint window
        to the database's size, and give the WAL file back when it is larger than it should
        be or nothing was written since the last pass.

        The automatic checkpoint is PASSIVE: it copies back only what no reader still needs,
        and the WAL starts over (and is truncated) only once no reader uses it. A reader that
        holds a snapshot for long (another process's long read) lets the WAL grow past the
        window; then, and when the store has gone quiet, a PASSIVE checkpoint copies what it
        can and, if it copied everything, a TRUNCATE checkpoint empties the file. TRUNCATE
        waits for readers through the busy handler, so it runs with no wait at all: if a
        reader is still in the WAL it gives up and the next pass tries again.
        """
        if self.readonly or self.path == ":memory:":
            return
        with self._lock:
            if self.conn.in_transaction:
                return
            run = self.conn.execute
            try:
                page_size = run("PRAGMA page_size").fetchone()[0]
                window = _wal_pages(run("PRAGMA page_count").fetchone()[0], page_size)
                run(f"PRAGMA wal_autocheckpoint={window}")
                try:
                    found = os.stat(self._wal)
                except FileNotFoundError:
                    self._wal_seen = None
                    return
                seen, self._wal_seen = self._wal_seen, (found.st_size, found.st_mtime_ns)
                quiet = seen == self._wal_seen
                if found.st_size == 0 or not (quiet or found.st_size > 2 * window * page_size):
                    return
                busy, log, copied = run("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if busy or log != copied:
                    return  # a reader still needs part of the WAL: next time
                run("PRAGMA busy_timeout=0")
                try:
                    run("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                finally:
                    run("PRAGMA busy_timeout=30000")
                self._wal_seen = None
            except sqlite3.Error as exc:  # housekeeping: never fail a run for it
                log_maintenance_failure(self.path, exc)

    def seal(self) -> None:
        """From now on refuse every write (an in-memory store opened read-only: built empty,
        then sealed; a file is opened `mode=ro` instead)."""
        self.conn.execute("PRAGMA query_only=ON")
        self.readonly = True

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Cursor]:
        """One transaction at a time on the one connection (a nested `Store.transaction`
        joins the open one before it gets here)."""
        with self._lock:
            if self._seen is not None:
                self._fresh(starting=True)
            cursor = self.conn.cursor()
            cursor.execute("BEGIN IMMEDIATE" if write and not self.readonly else "BEGIN")
            try:
                yield cursor
                if self._seen is not None:
                    self._fresh(starting=False)
                cursor.execute("COMMIT")
            except BaseException as exc:
                self.conn.rollback()  # also when COMMIT itself failed: never stay half open
                if _is_readonly(exc):
                    raise ReadOnlyStore(self._refusal(exc)) from None
                raise

    def _refusal(self, exc: BaseException) -> str:
        if self.readonly:
            return (
                f"the store {self.url} was opened read-only: it cannot be written "
                "(open it without readonly=True to change it)"
            )
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_READONLY_DBMOVED":
            return f"cannot write {self.path}: the file was moved or deleted while open"
        return (
            f"cannot write {self.path} ({exc}): the file, its directory or its -wal and -shm "
            "files are read-only; open it read-only to look at it (readonly=True)"
        )

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def user_sql(self, sql: str) -> str:
        return sql

    def table_names(self, cursor: Cursor) -> set[str]:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in cursor.fetchall()}

    def run_script(self, cursor: Cursor, script: str) -> None:
        for statement in script.split(";\n"):
            lines = [ln for ln in statement.splitlines() if not ln.strip().startswith("--")]
            if "".join(lines).strip():
                cursor.execute("\n".join(lines))

    def array_param(self, values: list[str]) -> Any:
        return json.dumps(values)

    def send_batch(self, cursor: Cursor, groups: list[tuple[str, list[Params]]]) -> int:
        for sql, params in groups:
            if len(params) == 1:
                cursor.execute(sql, params[0])
            else:
                cursor.executemany(sql, params)
        return len(groups)

    def row_writes(self) -> int | None:
        return self.conn.total_changes

    def wait_for_wakeup(self, timeout: float, stop: threading.Event) -> bool:
        """A plain sleep: a SQLite store has one worker, which polls (no one to wake it)."""
        stop.wait(timeout)
        return False

    def close(self) -> None:
        self.conn.close()
