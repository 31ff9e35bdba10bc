"""SQLite and PostgreSQL declare the same schema, in substance.

Same tables, same columns (names, order, nullability, defaults, types up to the backends'
spellings: INTEGER/BIGINT, REAL/DOUBLE PRECISION), same primary and unique keys, CHECK
constraints on the same columns (and under the same names when named), the same foreign keys,
and the same indexes by name (columns, uniqueness, the columns of a partial index's predicate).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from contract.schema_dump import dump, substance
from contract.support import raw_execute
from procession.store import open_store


def sqlite_url(tmp_path: os.PathLike[str], name: str = "store.db") -> str:
    return f"sqlite:///{tmp_path}/{name}"


def test_sqlite_and_postgres_stores_have_the_same_schema(
    tmp_path: os.PathLike[str], pg_url: str
) -> None:
    lite = sqlite_url(tmp_path)
    with open_store(lite), open_store(pg_url):
        pass
    lite_schema, pg_schema = substance(dump(lite)), substance(dump(pg_url))
    assert sorted(lite_schema) == sorted(pg_schema), "the tables differ"
    for table in lite_schema:
        for aspect in lite_schema[table]:
            assert lite_schema[table][aspect] == pg_schema[table][aspect], f"{table}: {aspect}"


# -- the comparison sees real differences, and only those ------------------------------------

SQLITE_TABLE = """CREATE TABLE probe (
  id INTEGER PRIMARY KEY,
  n BIGINT NOT NULL DEFAULT 0,
  r REAL,
  s TEXT NOT NULL DEFAULT 'new',
  note TEXT,
  CONSTRAINT n_positive CHECK (n >= 0),
  CHECK (s <> ''),
  UNIQUE (s, r)
)"""
POSTGRES_TABLE = """CREATE TABLE probe (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  n BIGINT NOT NULL DEFAULT 0,
  r DOUBLE PRECISION,
  s TEXT NOT NULL DEFAULT 'new',
  note TEXT,
  CONSTRAINT n_positive CHECK (n >= 0),
  CHECK (s <> ''),
  UNIQUE (s, r)
)"""
SQLITE_INDEX = "CREATE INDEX probe_open ON probe (n, id) WHERE s = 'open'"
POSTGRES_INDEX = "CREATE INDEX probe_open ON probe (n, id) WHERE s = 'open'"

CHANGES: dict[str, tuple[str, str] | None] = {
    "nothing": None,
    "a type": ("r DOUBLE PRECISION", "r BIGINT"),
    "a nullability": ("r DOUBLE PRECISION", "r DOUBLE PRECISION NOT NULL"),
    "a default": ("DEFAULT 'new'", "DEFAULT 'old'"),
    "a column name": ("note TEXT", "notes TEXT"),
    "a CHECK's columns": ("CHECK (s <> '')", "CHECK (r <> 0)"),
    "a CHECK missing": ("  CHECK (s <> ''),\n", ""),
    "a CHECK's name": ("CONSTRAINT n_positive", "CONSTRAINT n_not_negative"),
    "a unique key": ("UNIQUE (s, r)", "UNIQUE (s)"),
    "the primary key": ("IDENTITY PRIMARY KEY", "IDENTITY UNIQUE"),
    "an index's name": ("probe_open ON", "probe_opened ON"),
    "an index's columns": ("(n, id)", "(id, n)"),
    "an index's predicate": ("WHERE s = 'open'", "WHERE n > 0"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_comparison_fails_on_real_differences_only(
    tmp_path: os.PathLike[str], pg_url: str, change: str
) -> None:
    pg_table, pg_index = POSTGRES_TABLE, POSTGRES_INDEX
    edit = CHANGES[change]
    if edit is not None:
        old, new = edit
        assert (old in pg_table) != (old in pg_index), f"bad case {change!r}"
        pg_table, pg_index = pg_table.replace(old, new), pg_index.replace(old, new)
    lite = sqlite_url(tmp_path)
    raw_execute(lite, SQLITE_TABLE, SQLITE_INDEX)
    raw_execute(pg_url, pg_table, pg_index)
    lite_schema: Any = substance(dump(lite))
    pg_schema: Any = substance(dump(pg_url))
    if edit is None:
        assert lite_schema == pg_schema
    else:
        assert lite_schema != pg_schema, f"{change} went unnoticed"
