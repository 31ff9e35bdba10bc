"""Backends as fixtures: every contract test runs on SQLite and on PostgreSQL.

PostgreSQL tests each get a fresh schema (selected with the URL's search_path option) in
the database named by PROCESSION_TEST_PG (default: the local server's `test`). They are
skipped only when no server answers *and* the CI variable is unset; under CI a missing
server fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from tests.support import store_leaks

PG_URL = os.environ.get("PROCESSION_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgres"]


def _pg_reachable() -> str | None:
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


_PG_PROBLEM = _pg_reachable()


def pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema, dropped afterwards."""
    if _PG_PROBLEM is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {_PG_PROBLEM}")
        pytest.skip(f"no PostgreSQL server: {_PG_PROBLEM}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield pg_schema_url(schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """A URL to an empty store, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def backend(store_url: str) -> str:
    return "sqlite" if store_url.startswith("sqlite") else "postgres"


# -- tests close the stores they open ---------------------------------------------------------
#
# Every store opened during a test (by the test or by a function-scoped fixture) must be closed
# when the test's fixtures are torn down; a store opened while a wider-scoped fixture was set
# up must be closed when that fixture is torn down. The bookkeeping: tests/support/store_leaks.


@pytest.fixture(autouse=True)
def _stores_are_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves open a store it (or a function-scoped fixture) opened."""
    start = store_leaks.next_serial()
    yield
    leaked = store_leaks.left_open(None, start)
    if leaked:
        pytest.fail(
            f"{request.node.nodeid} left {len(leaked)} store(s) open: "
            f"{store_leaks.describe(leaked)}. Close them: `with open_store(...) as store:`, "
            "or in the teardown of the fixture that opened them.",
            pytrace=False,
        )


def _owner(fixturedef: pytest.FixtureDef[Any]) -> str:
    return f"{fixturedef.argname}@{id(fixturedef)}"


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Iterator[None]:
    if fixturedef.scope == "function":
        return (yield)
    store_leaks.owners.append(_owner(fixturedef))
    try:
        return (yield)
    finally:
        store_leaks.owners.pop()


def pytest_fixture_post_finalizer(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> None:
    if fixturedef.scope == "function":
        return
    leaked = store_leaks.left_open(_owner(fixturedef))
    if leaked:
        pytest.fail(
            f"the {fixturedef.scope}-scoped fixture {fixturedef.argname!r} (torn down after "
            f"{request.node.nodeid}) left {len(leaked)} store(s) open: "
            f"{store_leaks.describe(leaked)}",
            pytrace=False,
        )
