"""A database migrated by procession equals one built from the migration files (STYLE rule 7).

The reference is independent of procession's migration runner: the numbered `.sql` files are
read from the package folder and run one by one with the plain driver (schema_dump.py). Its
catalog dump (tables, columns with types, nullability and defaults, indexes, primary, unique
and CHECK constraints) must equal the dump of a store made by `open_store`, whether the store
was created fresh or at any older schema version and then migrated. Adding a migration file
adds a case; nothing here needs editing.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest

from contract.schema_dump import apply_migrations, backend_of, dump, meta, migration_files
from contract.support import Counted, is_sqlite, make_registry, reset_database, sqlite_path
from procession.store import open_store, queries

BACKENDS = ("sqlite", "postgres")
VERSIONS = sorted({n for backend in BACKENDS for n, _ in migration_files(backend)})


def reference(url: str) -> dict[str, Any]:
    """The schema every migration file builds, applied by hand; the database is left empty."""
    reset_database(url)
    apply_migrations(url, mark=False)
    try:
        return dump(url)
    finally:
        reset_database(url)


def latest(url: str) -> int:
    return migration_files(backend_of(url))[-1][0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_are_numbered_one_to_n_without_gaps(backend: str) -> None:
    numbers = [n for n, _ in migration_files(backend)]
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_runner_sees_every_migration_file(backend: str) -> None:
    on_disk = [(n, path.read_text()) for n, path in migration_files(backend)]
    assert queries.migrations(backend) == on_disk


def test_both_backends_have_the_same_migrations() -> None:
    assert [n for n, _ in migration_files("sqlite")] == [n for n, _ in migration_files("postgres")]


def test_a_fresh_store_has_the_schema_of_the_migration_files(store_url: str) -> None:
    expected = reference(store_url)
    assert "events" in expected["tables"] and "procession_meta" in expected["tables"]

    with open_store(store_url):
        pass
    assert dump(store_url) == expected
    assert meta(store_url) == {"schema": "procession", "schema_version": str(latest(store_url))}


@pytest.mark.parametrize("upto", VERSIONS, ids=[f"from_v{n}" for n in VERSIONS])
def test_a_store_migrated_from_an_older_version_has_the_same_schema(
    store_url: str, upto: int
) -> None:
    """A database an older procession left at version `upto` (built by hand, marked as
    procession marks it) is migrated by `open_store` to exactly the files' schema."""
    newest = latest(store_url)
    if upto > newest:
        pytest.fail(f"{backend_of(store_url)} has no migration {upto}")
    expected = reference(store_url)

    apply_migrations(store_url, upto)
    assert meta(store_url) == {"schema": "procession", "schema_version": str(upto)}
    if upto < newest:
        assert dump(store_url) != expected, f"migrations after {upto} must change the schema"

    with open_store(store_url):
        pass
    assert dump(store_url) == expected, f"migrating from version {upto} differs"
    assert meta(store_url) == {"schema": "procession", "schema_version": str(newest)}


def test_migrating_keeps_the_data_written_at_an_older_version(store_url: str) -> None:
    """Events written under schema version 1 survive the later migrations unchanged."""
    apply_migrations(store_url, 1)
    assert "CREATE TABLE events" in migration_files(backend_of(store_url))[0][1].read_text()
    columns = "stream_id, version, type, schema_version, data, metadata"
    values = "'old', 1, 'Counted', 1, '{\"n\": 7}', '{\"message_id\": \"m-1\"}'"
    if is_sqlite(store_url):
        conn = sqlite3.connect(sqlite_path(store_url))
        try:
            with conn:
                conn.execute(f"INSERT INTO events ({columns}) VALUES ({values})")
        finally:
            conn.close()
    else:
        with psycopg.connect(store_url) as pg:
            pg.execute(f"INSERT INTO events ({columns}) VALUES ({values})")

    with open_store(store_url, make_registry()) as store:
        [record] = store.read_stream("old")
        assert record.data == {"n": 7}
        assert record.metadata == {"message_id": "m-1"}
        assert store.append("old", [Counted(n=8)], expected_version=1).version == 2


def test_reopening_a_current_store_changes_nothing(store_url: str) -> None:
    with open_store(store_url, make_registry()) as store:
        store.append("s", [Counted(n=1)])
    before = dump(store_url)
    for _ in range(2):
        with open_store(store_url) as store:
            assert len(store.read_stream("s")) == 1
    assert dump(store_url) == before
