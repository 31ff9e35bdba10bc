"""The check that tests close the stores they open (tests/conftest.py) can fail, and names
the test or fixture that leaked."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
from tests.conftest import (  # the real check, as every test of this suite runs under it
    _stores_are_closed,
    pytest_fixture_post_finalizer,
    pytest_fixture_setup,
)
"""

TESTS = """
import sqlite3

import pytest

from procession import SchemaError, open_store

kept = []


def test_keeps_one_open(tmp_path):
    kept.append(open_store(f"sqlite:///{tmp_path}/kept.db"))


def test_drops_one_unclosed(tmp_path):
    open_store(f"sqlite:///{tmp_path}/dropped.db").head_position()


def test_closes_with_with(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/with.db") as store:
        store.head_position()


def test_closes_by_hand(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/by-hand.db")
    store.close()


def test_a_store_that_failed_to_open_is_not_left_open(tmp_path):
    path = tmp_path / "newer.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE procession_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO procession_meta VALUES ('schema', 'procession')")
        conn.execute("INSERT INTO procession_meta VALUES ('schema_version', '999999')")
    conn.close()
    with pytest.raises(SchemaError):
        open_store(f"sqlite:///{path}")


@pytest.fixture
def closing_fixture(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/fixture.db") as store:
        yield store


def test_with_a_fixture_that_closes(closing_fixture):
    closing_fixture.head_position()


@pytest.fixture(scope="module")
def leaky_module_fixture(tmp_path_factory):
    return open_store(f"sqlite:///{tmp_path_factory.mktemp('m')}/module.db")


def test_with_a_leaky_module_fixture(leaky_module_fixture):
    leaky_module_fixture.head_position()
"""


def test_a_test_or_fixture_leaving_a_store_open_fails_and_is_named(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_leaky=TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, errors=3)
    out = result.stdout.str()
    assert "test_leaky.py::test_keeps_one_open left 1 store(s) open: sqlite:///" in out
    assert "kept.db" in out
    assert "test_leaky.py::test_drops_one_unclosed left 1 store(s) open" in out
    assert "dropped.db (garbage-collected unclosed)" in out
    assert "module-scoped fixture 'leaky_module_fixture'" in out and "module.db" in out
    for fine in ("with.db", "by-hand.db", "newer.db", "fixture.db"):
        assert fine not in out
