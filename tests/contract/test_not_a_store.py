"""A SQLite file that is not a procession store is refused, in every mode, and left as it was.

SQLite only: a file belongs to one application, while a PostgreSQL database is shared (its
other tables are fine: test_open_errors.py). An empty file, a text file and another
application's SQLite database are refused by `open_store` whether it would create, only open,
or only read; a path that does not exist still becomes a new store when creating.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from contract.support import deposits, make_registry
from procession import SchemaError, StoreUnavailable, open_store

MODES: dict[str, dict[str, Any]] = {
    "create": {},
    "open": {"create": False},
    "read-only": {"readonly": True},
}


def empty(path: Path) -> None:
    path.write_bytes(b"")


def text(path: Path) -> None:
    path.write_text("customer,amount\nc-1,100\n")


def foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, note TEXT)")
    conn.execute("INSERT INTO a (note) VALUES ('theirs')")
    conn.commit()
    conn.close()


KINDS = {
    "empty": (
        empty,
        "{path} is an empty file, not a procession store: remove it, or give a path that "
        "does not exist to create a new store",
    ),
    "text": (
        text,
        "{path} is not a SQLite database, so not a procession store: give the path of a "
        "store, or a path that does not exist to create a new store",
    ),
    "foreign": (
        foreign,
        "{path} is a SQLite database but not a procession store (it has tables: a, b): give "
        "the path of a store, or a path that does not exist to create one",
    ),
}


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_file_that_is_not_a_store_is_refused_and_left_as_it_was(
    tmp_path: Path, kind: str, mode: str
) -> None:
    make, message = KINDS[kind]
    path = tmp_path / "store.db"
    make(path)
    before = files_of(tmp_path)
    with pytest.raises(SchemaError) as caught:
        open_store(f"sqlite:///{path}", **MODES[mode])
    assert str(caught.value) == message.format(path=path)
    assert files_of(tmp_path) == before, "byte for byte, and nothing beside it"


def test_many_foreign_tables_are_named_up_to_ten(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    for i in range(12):
        conn.execute(f"CREATE TABLE t{i:02} (id INTEGER)")
    conn.close()
    with pytest.raises(SchemaError, match=r"\(it has tables: t00, .*, t09 and 2 more\)"):
        open_store(f"sqlite:///{path}", readonly=True)


def test_an_empty_sqlite_database_becomes_a_store_only_when_creating(tmp_path: Path) -> None:
    """A valid SQLite database without a table holds nothing to lose: creating makes it a
    store; opening or reading it refuses it (it is not a store yet)."""
    path = tmp_path / "blank.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 1")  # writes the header: a real, empty database
    conn.close()
    assert path.stat().st_size > 0
    for options in (MODES["open"], MODES["read-only"]):
        with pytest.raises(SchemaError, match="is an empty SQLite database, not a procession"):
            open_store(f"sqlite:///{path}", **options)
    with open_store(f"sqlite:///{path}", make_registry()) as store:
        store.append("acc-1", deposits(1))
    with open_store(f"sqlite:///{path}", make_registry(), readonly=True) as store:
        assert store.head_position() == 1


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    for options in MODES.values():
        with pytest.raises(StoreUnavailable, match="is a directory, not a store"):
            open_store(f"sqlite:///{tmp_path}", **options)


def test_a_new_path_becomes_a_store_and_nothing_else_is_left_beside_it(tmp_path: Path) -> None:
    """The new store is built beside its path and moved into place whole."""
    url = f"sqlite:///{tmp_path}/new.db"
    with open_store(url, make_registry()) as store:
        store.append("acc-1", deposits(1))
    assert [p.name for p in tmp_path.iterdir()] == ["new.db"]
    with open_store(url, make_registry(), create=False) as store:
        assert store.head_position() == 1


def test_openers_racing_to_create_a_store_never_see_it_half_made(tmp_path: Path) -> None:
    """Opening while another opener creates the store: never an "empty file" refusal (SQLite
    creates its file empty and writes it a moment later, so a store made in place would be
    seen empty by a racing opener), and every opener gets the one store."""
    url = f"sqlite:///{tmp_path}/race.db"
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def opener(i: int) -> None:
        try:
            barrier.wait()
            with open_store(url, make_registry(), create=i % 2 == 0) as store:
                store.append(f"opener-{i}", deposits(i))
        except StoreUnavailable as exc:  # a non-creating opener may come first: no store yet
            if "no store at" not in str(exc):
                errors.append(exc)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with open_store(url, make_registry(), readonly=True) as store:
        streams = {e.stream_id for e in store.read_all()}
    assert {f"opener-{i}" for i in range(0, 8, 2)} <= streams
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("race.db")] == []
