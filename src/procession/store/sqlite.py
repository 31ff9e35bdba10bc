"""SQLite adapter: the standard library's sqlite3, WAL, one writer at a time.

A SQLite store belongs to one process (DESIGN §9: PostgreSQL is the scale-out engine). Writes
use BEGIN IMMEDIATE so a transaction never has to upgrade its lock half way; reads use a
deferred transaction and run beside the writer thanks to WAL. A read-only store opens the
file `mode=ro` and creates nothing beside it (`SQLiteBackend._open_readonly`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
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

    def maintain(self) -> None:
        """SQLite reuses freed pages at once and needs no vacuum for speed."""


class SQLiteBackend:
    name = "sqlite"
    coordination = SQLiteCoordination()

    def __init__(self, url: str, path: str, *, readonly: bool = False) -> None:
        self.url = url
        self.path = path
        self.readonly = readonly
        self._seen: tuple[int, int, int] | None = None
        """The file as an `immutable=1` connection read it, else None (`_open_readonly`)."""
        self._lock = threading.RLock()
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
        # Checkpoint (copy the WAL back and fsync) every ~400 MB instead of every 4 MB: a page
        # rewritten by many transactions in between is copied and synced once. Measured on
        # the 30k-contract scenario: commits 7.5 s -> 5.0 s of a 25 s run.
        run("PRAGMA wal_autocheckpoint=100000")
        run("PRAGMA cache_size=-65536")
        run("PRAGMA temp_store=MEMORY")
        run("PRAGMA busy_timeout=30000")

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

    def close(self) -> None:
        self.conn.close()
