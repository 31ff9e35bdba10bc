"""Opening a store: bad URLs, unreachable or foreign databases, newer schemas, and reopening.

Each failure must be a procession error that names its problem, never a driver exception.
Scenarios that exist on one backend only (a garbage file is a SQLite thing) say so.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from contract.support import Counted, deposits, is_sqlite, make_registry, raw_execute
from procession.errors import ConfigurationError, SchemaError, StoreUnavailable
from procession.store import NO_STREAM, open_store, queries

# -- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["mysql", "sqlite3", "postgresql+psycopg", "file"])
def test_unknown_scheme_is_a_configuration_error_naming_it(store_url: str, scheme: str) -> None:
    url = scheme + store_url[store_url.index(":") :]
    with pytest.raises(ConfigurationError) as caught:
        open_store(url)
    assert repr(scheme) in str(caught.value)
    assert "sqlite:///" in str(caught.value), "the message shows what would be accepted"


def test_bare_path_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown store URL scheme ''"):
        open_store(str(tmp_path / "store.db"))
    assert not (tmp_path / "store.db").exists()


@pytest.mark.parametrize(
    "url", ["sqlite://store.db", "sqlite:///", "sqlite:store.db", "sqlite:/store.db"]
)
def test_malformed_sqlite_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(repr(url))) as caught:
        open_store(url)
    assert "sqlite:///path/to.db" in str(caught.value)


def test_malformed_postgres_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        open_store("postgresql://postgres@127.0.0.1:notaport/test")


# -- unreachable --------------------------------------------------------------------------------


def test_unreachable_postgres_is_store_unavailable_naming_host_and_port() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        open_store("postgresql://postgres:s3cret-pw@127.0.0.1:1/test")
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "s3cret-pw" not in message, "the password must never appear in an error"


def test_missing_postgres_database_is_store_unavailable(pg_url: str) -> None:
    url = re.sub(r"/test(\?|$)", r"/no_such_database_here\1", pg_url)
    assert url != pg_url
    with pytest.raises(StoreUnavailable, match="no_such_database_here"):
        open_store(url)


def test_unopenable_sqlite_path_is_store_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/missing-dir/store.db"
    with pytest.raises(StoreUnavailable, match="missing-dir"):
        open_store(url)


# -- not ours -----------------------------------------------------------------------------------


def test_file_that_is_not_a_sqlite_database_is_a_schema_error(tmp_path: Path) -> None:
    """SQLite only: PostgreSQL has no file to get wrong. (More such files, in every mode:
    test_not_a_store.py.)"""
    path = tmp_path / "garbage.db"
    garbage = bytes(range(256)) * 64
    path.write_bytes(garbage)
    with pytest.raises(SchemaError, match="is not a SQLite database") as caught:
        open_store(f"sqlite:///{path}")
    assert str(path) in str(caught.value)
    assert path.read_bytes() == garbage, "the file is left as it was"


def test_a_sqlite_file_with_a_damaged_header_is_a_schema_error(tmp_path: Path) -> None:
    """The SQLite magic string, then garbage: SQLite finds it is not a database."""
    path = tmp_path / "damaged.db"
    damaged = b"SQLite format 3\x00" + bytes(range(256)) * 64
    path.write_bytes(damaged)
    with pytest.raises(SchemaError, match="is not a SQLite database") as caught:
        open_store(f"sqlite:///{path}")
    assert str(path) in str(caught.value)
    assert path.read_bytes() == damaged, "the file is left as it was"


def _owned_tables() -> list[str]:
    """Every table procession's migrations leave behind, except its own marker table (a table
    rebuilt under a temporary name and renamed back is not one of them)."""
    names: list[str] = []
    renamed: set[str] = set()
    for _, script in queries.migrations("sqlite"):
        names += re.findall(r"CREATE TABLE (\w+)", script)
        renamed |= set(re.findall(r"ALTER TABLE (\w+) RENAME", script))
    return [n for n in names if n != "procession_meta" and n not in renamed]


@pytest.mark.parametrize("table", _owned_tables())
def test_foreign_table_under_our_name_is_a_schema_error(store_url: str, table: str) -> None:
    raw_execute(
        store_url,
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, owner TEXT)",
        f"INSERT INTO {table} (id, owner) VALUES (1, 'someone else')",
    )
    with pytest.raises(SchemaError) as caught:
        open_store(store_url)
    assert table in str(caught.value)
    assert "procession_meta" in str(caught.value)
    # nothing was created or changed
    assert raw_execute(store_url, f"SELECT id, owner FROM {table}") == [(1, "someone else")]
    assert _tables(store_url) == {table}


def test_unrelated_tables_can_share_a_postgres_database(pg_url: str) -> None:
    """A PostgreSQL database is shared by applications; a SQLite file is not (the same
    tables in a SQLite file: test_not_a_store.py)."""
    raw_execute(pg_url, "CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    with open_store(pg_url, make_registry()) as store:
        store.append("s", deposits(1))
        assert len(store.read_stream("s")) == 1
    assert "customers" in _tables(pg_url)


def test_marker_table_without_our_mark_is_a_schema_error(store_url: str) -> None:
    raw_execute(
        store_url,
        "CREATE TABLE procession_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "INSERT INTO procession_meta (key, value) VALUES ('schema', 'something-else')",
    )
    with pytest.raises(SchemaError, match="does not mark a procession schema"):
        open_store(store_url)


# -- schema versions ----------------------------------------------------------------------------


def _set_schema_version(url: str, value: str) -> None:
    with open_store(url) as store, store.transaction() as tx:
        tx.set_meta("schema_version", value)


def test_newer_schema_version_is_refused(store_url: str) -> None:
    _set_schema_version(store_url, "999")
    with pytest.raises(SchemaError, match="newer") as caught:
        open_store(store_url)
    assert "999" in str(caught.value)
    latest = queries.migrations("sqlite" if is_sqlite(store_url) else "postgres")[-1][0]
    assert f"knows up to {latest}" in str(caught.value)


def test_corrupt_schema_version_is_refused(store_url: str) -> None:
    _set_schema_version(store_url, "one")
    with pytest.raises(SchemaError, match="corrupt schema version 'one'"):
        open_store(store_url)


def test_a_failed_open_leaves_the_database_usable(store_url: str) -> None:
    _set_schema_version(store_url, "999")
    with pytest.raises(SchemaError):
        open_store(store_url)
    latest = queries.migrations("sqlite" if is_sqlite(store_url) else "postgres")[-1][0]
    _set_schema_version_raw(store_url, str(latest))
    with open_store(store_url, make_registry()) as store:
        store.append("s", deposits(1))


def _set_schema_version_raw(url: str, value: str) -> None:
    raw_execute(url, f"UPDATE procession_meta SET value = '{value}' WHERE key = 'schema_version'")


# -- reopening ----------------------------------------------------------------------------------


def test_reopening_keeps_the_data(store_url: str) -> None:
    registry = make_registry()
    with open_store(store_url, registry) as store:
        first = store.append("s", deposits(1, 2), NO_STREAM)
        before = list(store.read_all())

    with open_store(store_url, registry) as reopened:
        assert list(reopened.read_all()) == before
        second = reopened.append("s", deposits(3), expected_version=2)
        assert second.version == 3
        assert second.position > first.position

    with open_store(store_url, registry) as third:
        assert [r.data["amount"] for r in third.read_stream("s")] == [1, 2, 3]


def test_concurrent_first_opens_create_the_schema_once(store_url: str) -> None:
    registry = make_registry()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def opener(i: int) -> None:
        try:
            barrier.wait()
            with open_store(store_url, registry) as store:
                store.append(f"opener-{i}", [Counted(n=i)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with open_store(store_url, registry) as store:
        assert sorted(r.data["n"] for r in store.read_all()) == [0, 1, 2, 3]


def _tables(url: str) -> set[str]:
    if is_sqlite(url):
        rows = raw_execute(url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = raw_execute(
            url,
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema()",
        )
    return {r[0] for r in rows}


def test_create_false_refuses_a_missing_sqlite_file_and_leaves_none(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(StoreUnavailable, match="no store at"):
        open_store(f"sqlite:///{path}", create=False)
    assert not path.exists()
    open_store(f"sqlite:///{path}").close()  # created on purpose ...
    open_store(f"sqlite:///{path}", create=False).close()  # ... then opened as it is
