"""A database migrated step by step equals a freshly created one (STYLE rule 7).

For every schema version k a released procession could have left behind, the test builds that
database with the plain driver (migrations 1..k and the marker rows), lets `open_store` migrate
the rest, and compares tables, columns, indexes and constraints with a fresh store's. Adding a
migration adds a case; nothing here needs editing.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from contract.support import (
    Counted,
    is_sqlite,
    make_registry,
    reset_database,
    schema_shape,
    sqlite_path,
)
from procession.store import open_store, queries

BACKENDS = ("sqlite", "postgres")


def backend_of(url: str) -> str:
    return "sqlite" if is_sqlite(url) else "postgres"


def apply_by_hand(url: str, upto: int) -> None:
    """The database an older procession (schema version `upto`) would have left."""
    steps = [(n, sql) for n, sql in queries.migrations(backend_of(url)) if n <= upto]
    if is_sqlite(url):
        conn = sqlite3.connect(sqlite_path(url))
        try:
            for number, script in steps:
                conn.executescript(script)
                _mark(conn.execute, number, "?")
            conn.commit()
        finally:
            conn.close()
        return
    with psycopg.connect(url) as pg:
        for number, script in steps:
            pg.execute(script)
            _mark(pg.execute, number, "%s")


def _mark(execute: object, number: int, slot: str) -> None:
    sql = (
        f"INSERT INTO procession_meta (key, value) VALUES ({slot}, {slot}) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )
    execute(sql, ("schema", "procession"))  # type: ignore[operator]
    execute(sql, ("schema_version", str(number)))  # type: ignore[operator]


def schema_version(url: str) -> str | None:
    with open_store(url) as store, store.transaction(write=False) as tx:
        return tx.get_meta("schema_version")


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_are_numbered_one_to_n_without_gaps(backend: str) -> None:
    numbers = [n for n, _ in queries.migrations(backend)]
    assert numbers == list(range(1, len(numbers) + 1))


def test_both_backends_have_the_same_migrations() -> None:
    assert [n for n, _ in queries.migrations("sqlite")] == [
        n for n, _ in queries.migrations("postgres")
    ]


def test_every_step_migrates_to_the_fresh_schema(store_url: str) -> None:
    steps = queries.migrations(backend_of(store_url))
    latest = steps[-1][0]

    with open_store(store_url):
        pass
    fresh = schema_shape(store_url)
    assert "events" in fresh["tables"] and "procession_meta" in fresh["tables"]
    assert schema_version(store_url) == str(latest)

    for upto, _ in steps:
        reset_database(store_url)
        apply_by_hand(store_url, upto)
        by_hand = schema_shape(store_url)
        if upto < latest:
            assert by_hand != fresh, f"migration {upto + 1}.. must change the schema"
        with open_store(store_url):
            pass
        assert schema_shape(store_url) == fresh, f"migrating from version {upto} differs"
        assert schema_version(store_url) == str(latest)


def test_migrating_keeps_the_data_written_at_an_older_version(store_url: str) -> None:
    """Events written under schema version 1 survive the later migrations unchanged."""
    apply_by_hand(store_url, 1)
    version_one = queries.migrations(backend_of(store_url))[0][1]
    assert "CREATE TABLE events" in version_one
    columns = "stream_id, version, type, schema_version, data, metadata"
    values = "'old', 1, 'Counted', 1, '{\"n\": 7}', '{\"message_id\": \"m-1\"}'"
    if is_sqlite(store_url):
        with sqlite3.connect(sqlite_path(store_url)) as conn:
            conn.execute(f"INSERT INTO events ({columns}) VALUES ({values})")
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
    before = schema_shape(store_url)
    for _ in range(2):
        with open_store(store_url) as store:
            assert len(store.read_stream("s")) == 1
    assert schema_shape(store_url) == before
