"""`open_store(url)`: the one entry point to a procession database."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from urllib.parse import urlsplit

from procession.errors import ConfigurationError, SchemaError, StoreUnavailable
from procession.messages import MessageRegistry
from procession.store import queries
from procession.store.base import SCHEMA_MARK, Backend, ClockKind, Session, Store, Tx, check_schema
from procession.store.records import ANY, NO_STREAM, AppendResult, RecordedEvent
from procession.store.sqlite import SQLiteBackend

__all__ = [
    "ANY",
    "NO_STREAM",
    "AppendResult",
    "ClockKind",
    "RecordedEvent",
    "Session",
    "Store",
    "Tx",
    "connection_lost",
    "open_store",
    "schema_version",
]


def open_store(
    url: str,
    registry: MessageRegistry | None = None,
    create: bool = True,
    *,
    readonly: bool = False,
) -> Store:
    """Open the store behind `url`, creating or migrating its schema as needed.

    `sqlite:///path/to.db`, `sqlite:///:memory:` or `postgresql://user@host:port/db`.

    - With `create=False` the store must exist: a SQLite file that does not exist or holds
      no procession schema, or a PostgreSQL schema without procession's tables, is an error
      (`StoreUnavailable` / `SchemaError`), not a new store (a tool that acts on a store
      should not make one behind a mistyped URL). An existing store is still migrated.
    - A SQLite file that is not a store is refused whatever the mode, and left as it was: an
      empty file, a file that is not a SQLite database, a SQLite database holding other
      tables. A path that does not exist becomes a new store (with `create`), built beside
      it and moved into place whole, so no other opener ever sees it half made.
    - `readonly=True` changes nothing, ever: no migration runs, PostgreSQL sessions are
      READ ONLY, and SQLite opens the file `mode=ro` and creates no file (no -wal or -shm
      either), so a file or directory without write permission can be read. While no
      writer has a SQLite store open it is read as it is, and a read transaction during
      which a writer changed the file fails (`StoreUnavailable`: run again); beside a
      writer it reads through the writer's -wal (see `SQLiteBackend._open_readonly`). The
      schema must be this procession's: an older one is refused (migrate it read-write
      once: `procession migrate`), as is a newer one (`SchemaError`). Reads work as usual;
      a write raises `ReadOnlyStore`. `sqlite:///:memory:` read-only is an empty store
      that refuses writes.
    """
    path = _sqlite_file(url)
    inspect = path is not None and not readonly
    if path is not None and not os.path.exists(path):
        if readonly or not create:
            raise StoreUnavailable(f"no store at {path}")
        inspect = not _create_sqlite_store(path)
    memory = url == "sqlite:///:memory:"  # new and empty every time: nothing to protect
    if readonly and memory:
        store = open_store(url, registry)
        assert isinstance(store.backend, SQLiteBackend)
        store.backend.seal()
        return store
    if inspect:
        _inspect(url, create)  # before the read-write open's PRAGMAs change the file
    backend = _backend(url, readonly)
    store = Store(backend, queries.load(backend.name), registry)
    try:
        if readonly:
            check_version(store)
        else:
            migrate(store, create=create or memory)
    except BaseException:
        backend.close()
        raise
    return store


def connection_lost(url: str, exc: BaseException) -> bool:
    """Whether `exc` says the PostgreSQL database at `url` refused, dropped or terminated a
    connection (or the pool had none in time): worth trying again later. Never for SQLite,
    nor for a misconfiguration (a bad password, role or database name)."""
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        return False
    from procession.store.postgres import connection_fault, misconfigured  # psycopg: lazily

    if misconfigured(exc):
        return False
    return isinstance(exc, StoreUnavailable) or connection_fault(exc)


def _sqlite_file(url: str) -> str | None:
    """The path of a SQLite file URL (not `:memory:`), else None."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return path if path and path != ":memory:" else None


def _inspect(url: str, create: bool) -> None:
    """Refuse a SQLite file that is not a store through a read-only connection, so that a
    foreign database is left exactly as it was."""
    with (
        Store(_backend(url, readonly=True), queries.load("sqlite")) as probe,
        probe.transaction(write=False) as tx,
    ):
        _current_version(tx, probe.backend, create)


def _create_sqlite_store(path: str) -> bool:
    """Build a new store's schema in a file beside `path`, then move it into place, unless
    another opener got there first (then False). Until then `path` does not exist: never a
    file another opener could find empty (SQLite creates its file empty, then writes it)."""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise StoreUnavailable(f"cannot create a store at {path}: no directory {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreUnavailable(f"cannot create a store at {path}: {folder} cannot be written")
    building = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.creating")
    try:
        try:
            with Store(_backend(f"sqlite:///{building}"), queries.load("sqlite")) as store:
                migrate(store)
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"cannot create a store at {path}: {exc}") from None
        try:
            os.link(building, path)  # atomic, and it never replaces a file
        except FileExistsError:
            return False  # another opener created it meanwhile: that one is the store
        except OSError:  # no hard links on this file system
            if os.path.exists(path):
                return False
            os.replace(building, path)
        return True
    except OSError as exc:
        raise StoreUnavailable(f"cannot create a store at {path}: {exc.strerror or exc}") from None
    finally:
        for leftover in (building, building + "-wal", building + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _backend(url: str, readonly: bool = False) -> Backend:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigurationError(
                f"bad SQLite URL {url!r}: use sqlite:///path/to.db or sqlite:///:memory:"
            )
        return SQLiteBackend(url, path, readonly=readonly)
    if scheme in ("postgresql", "postgres"):
        from procession.store.postgres import PostgresBackend

        try:
            _ = urlsplit(url).port  # raises ValueError on a non-numeric port
        except ValueError as exc:
            raise ConfigurationError(f"bad PostgreSQL URL: {exc}") from None
        return PostgresBackend(url, readonly=readonly)
    raise ConfigurationError(
        f"unknown store URL scheme {scheme!r} in {url!r}: "
        "use sqlite:///path/to.db, sqlite:///:memory: or postgresql://..."
    )


def migrate(store: Store, *, create: bool = True) -> int:
    """Apply the numbered migrations this database lacks; return its schema version.

    With `create=False` the database must already hold a procession store."""
    backend = store.backend
    steps = queries.migrations(backend.name)
    latest = steps[-1][0]
    with store.transaction() as tx:
        tx.wait_singleton("migrate")  # PostgreSQL: one migrator at a time
        current = _current_version(tx, backend, create)
        if current > latest:
            raise _newer(current, latest)
        for number, script in steps:
            if number > current:
                backend.run_script(tx.cursor, script)
                tx.set_meta("schema", SCHEMA_MARK)
                tx.set_meta("schema_version", str(number))
    return latest


def check_version(store: Store) -> int:
    """The schema version of a store opened read-only: this procession's, or an error that
    says what to do (nothing is changed either way)."""
    backend = store.backend
    latest = queries.migrations(backend.name)[-1][0]
    with store.transaction(write=False) as tx:
        current = _current_version(tx, backend, create=False)
    if current > latest:
        raise _newer(current, latest)
    if current < latest:
        raise SchemaError(
            f"the store's schema is version {current} and this procession needs version "
            f"{latest}: a read-only open never migrates; migrate it once read-write "
            f"(`procession migrate --db URL`, or open_store(url) without readonly), then "
            "look again"
        )
    return current


def schema_version(store: Store) -> int:
    """The schema version the store's database is at."""
    with store.transaction(write=False) as tx:
        version = tx.get_meta("schema_version")
    return int(version or 0)


def _newer(current: int, latest: int) -> SchemaError:
    return SchemaError(
        f"the database schema is version {current}, newer than this procession "
        f"(knows up to {latest}): upgrade procession"
    )


def _where(backend: Backend) -> str:
    if backend.name == "sqlite":
        return backend.url[len("sqlite:///") :]
    from procession.store.postgres import _safe

    return _safe(backend.url)


def _current_version(tx: Tx, backend: Backend, create: bool = True) -> int:
    tables = backend.table_names(tx.cursor)
    marked = "procession_meta" in tables
    scripts = [script for _, script in queries.migrations(backend.name)]
    created = {name for script in scripts for name in re.findall(r"CREATE TABLE (\w+)", script)}
    renamed = {
        name for script in scripts for name in re.findall(r"ALTER TABLE (\w+) RENAME", script)
    }
    ours = created - renamed  # a table rebuilt under a temporary name is not one of ours
    check_schema(tables, marked, ours)
    if not marked:
        if backend.name == "sqlite":  # a file is one application's: PostgreSQL is shared
            _refuse_foreign_file(_where(backend), tables, create)
        elif not create:
            raise StoreUnavailable(
                f"no procession store in {_where(backend)}: it has no procession_meta table "
                "(a worker creates one, as does open_store(url) without create=False)"
            )
        return 0
    if tx.get_meta("schema") != SCHEMA_MARK:
        raise SchemaError("procession_meta exists but does not mark a procession schema")
    version = tx.get_meta("schema_version")
    if version is None or not version.isdigit():
        raise SchemaError(f"corrupt schema version {version!r} in procession_meta")
    return int(version)


def _refuse_foreign_file(path: str, tables: set[str], create: bool) -> None:
    """A SQLite file without procession's schema may become a store only if it holds no
    tables, and only when the caller means to create one."""
    theirs = sorted(t for t in tables if not t.startswith("sqlite_"))
    if theirs:
        shown = ", ".join(theirs[:10]) + (f" and {len(theirs) - 10} more" if theirs[10:] else "")
        raise SchemaError(
            f"{path} is a SQLite database but not a procession store (it has tables: "
            f"{shown}): give the path of a store, or a path that does not exist to create one"
        )
    if not create:
        raise SchemaError(
            f"{path} is an empty SQLite database, not a procession store: open it with "
            "create=True to make it one, or give the path of a store"
        )
