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
