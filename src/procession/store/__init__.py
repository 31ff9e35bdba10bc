"""`open_store(url)`: the one entry point to a procession database."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from procession.errors import ConfigurationError, SchemaError, StoreUnavailable
from procession.messages import MessageRegistry
from procession.store import queries
from procession.store.base import SCHEMA_MARK, Backend, ClockKind, Session, Store, Tx, check_schema
from procession.store.records import ANY, NO_STREAM, AppendResult, RecordedEvent

__all__ = [
    "ANY",
    "NO_STREAM",
    "AppendResult",
    "ClockKind",
    "RecordedEvent",
    "Session",
    "Store",
    "Tx",
    "open_store",
]


def open_store(url: str, registry: MessageRegistry | None = None, create: bool = True) -> Store:
    """Open (creating or migrating its schema) the store behind `url`.

    `sqlite:///path/to.db`, `sqlite:///:memory:` or `postgresql://user@host:port/db`.
    With `create=False` a SQLite file that does not exist is an error, not a new store
    (tools that only look should not leave a file behind a mistyped path).
    """
    if not create and url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path != ":memory:" and not os.path.exists(path):
            raise StoreUnavailable(f"no store at {path}")
    backend = _backend(url)
    store = Store(backend, queries.load(backend.name), registry)
    try:
        migrate(store)
    except BaseException:
        backend.close()
        raise
    return store


def _backend(url: str) -> Backend:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from procession.store.sqlite import SQLiteBackend

        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigurationError(
                f"bad SQLite URL {url!r}: use sqlite:///path/to.db or sqlite:///:memory:"
            )
        return SQLiteBackend(url, path)
    if scheme in ("postgresql", "postgres"):
        from procession.store.postgres import PostgresBackend

        try:
            _ = urlsplit(url).port  # raises ValueError on a non-numeric port
        except ValueError as exc:
            raise ConfigurationError(f"bad PostgreSQL URL: {exc}") from None
        return PostgresBackend(url)
    raise ConfigurationError(
        f"unknown store URL scheme {scheme!r} in {url!r}: "
        "use sqlite:///path/to.db, sqlite:///:memory: or postgresql://..."
    )


def migrate(store: Store) -> int:
    """Apply the numbered migrations this database lacks; return its schema version."""
    backend = store.backend
    steps = queries.migrations(backend.name)
    with store.transaction() as tx:
        tx.wait_singleton("migrate")  # PostgreSQL: one migrator at a time
        current = _current_version(tx, backend)
        latest = steps[-1][0]
        if current > latest:
            raise SchemaError(
                f"the database schema is version {current}, newer than this procession "
                f"(knows up to {latest}): upgrade procession"
            )
        for number, script in steps:
            if number > current:
                backend.run_script(tx.cursor, script)
                tx.set_meta("schema", SCHEMA_MARK)
                tx.set_meta("schema_version", str(number))
    return latest


def _current_version(tx: Tx, backend: Backend) -> int:
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
        return 0
    if tx.get_meta("schema") != SCHEMA_MARK:
        raise SchemaError("procession_meta exists but does not mark a procession schema")
    version = tx.get_meta("schema_version")
    if version is None or not version.isdigit():
        raise SchemaError(f"corrupt schema version {version!r} in procession_meta")
    return int(version)
