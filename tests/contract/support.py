"""Messages and helpers shared by the contract tests (no fixtures here: see conftest.py)."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg

from procession.messages import Event, MessageRegistry


class Deposited(Event, frozen=True, kw_only=True):
    account: str
    amount: int


class Withdrawn(Event, frozen=True, kw_only=True):
    account: str
    amount: int
    note: str | None = None


class Counted(Event, frozen=True, kw_only=True):
    n: int


class NotRegistered(Event, frozen=True, kw_only=True):
    n: int


def make_registry() -> MessageRegistry:
    registry = MessageRegistry()
    registry.register(Deposited, name="bank.Deposited")
    registry.register(Withdrawn)
    registry.register(Counted)
    return registry


def deposits(*amounts: int, account: str = "acc-1") -> list[Deposited]:
    return [Deposited(account=account, amount=a) for a in amounts]


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> str:
    return url[len("sqlite:///") :]


def raw_execute(url: str, *statements: str) -> list[Any]:
    """Run single statements on the database behind `url` with the plain driver.

    Returns the rows of the last statement (empty when it has no result set).
    """
    if is_sqlite(url):
        conn = sqlite3.connect(sqlite_path(url))
        try:
            cursor = conn.cursor()
            for statement in statements:
                cursor.execute(statement)
            rows = cursor.fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.cursor()
        for statement in statements:
            cursor.execute(statement)
        return cursor.fetchall() if cursor.description else []


def reset_database(url: str) -> None:
    """Make the database behind `url` empty again (file removed / schema recreated)."""
    if is_sqlite(url):
        import pathlib

        for suffix in ("", "-wal", "-shm"):
            pathlib.Path(sqlite_path(url) + suffix).unlink(missing_ok=True)
        return
    with psycopg.connect(url, autocommit=True) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()
        assert schema is not None and schema[0] is not None
        conn.execute(f'DROP SCHEMA "{schema[0]}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema[0]}"')


Shape = dict[str, Any]


def schema_shape(url: str) -> Shape:
    """Tables, columns, indexes and constraints of a database, free of its schema's name."""
    if is_sqlite(url):
        return _sqlite_shape(sqlite_path(url))
    return _postgres_shape(url)


def _sqlite_shape(path: str) -> Shape:
    conn = sqlite3.connect(path)
    try:
        tables = sorted(
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        )
        columns = {
            t: [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info('{t}')")] for t in tables
        }
        indexes = sorted(
            (r[0], r[1], r[2] or "")
            for r in conn.execute(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'"
            )
        )
    finally:
        conn.close()
    return {"tables": tables, "columns": columns, "indexes": indexes}


def _postgres_shape(url: str) -> Shape:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
        assert row is not None
        schema = row[0]
        tables = sorted(
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        )
        columns: dict[str, list[tuple[Any, ...]]] = {t: [] for t in tables}
        for r in conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity"
            " FROM information_schema.columns WHERE table_schema = %s"
            " ORDER BY table_name, ordinal_position",
            (schema,),
        ):
            columns[r[0]].append(tuple(r[1:]))
        indexes = sorted(
            (r[0], r[1], r[2].replace(f"{schema}.", ""))
            for r in conn.execute(
                "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = %s",
                (schema,),
            )
        )
        constraints = sorted(
            (r[0], r[1], r[2])
            for r in conn.execute(
                "SELECT constraint_name, table_name, constraint_type"
                " FROM information_schema.table_constraints"
                " WHERE table_schema = %s AND constraint_type <> 'CHECK'",
                (schema,),
            )
        )
    return {"tables": tables, "columns": columns, "indexes": indexes, "constraints": constraints}
