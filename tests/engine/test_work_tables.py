"""The typed layer over the work tables: states the schema knows, records read by column."""

from __future__ import annotations

import re
from importlib import resources

import msgspec
import pytest

from procession import SchemaError, open_store
from procession.store.queries import load
from procession.store.work import BatchStatus, CommandStatus, InstanceStatus, ItemStatus, Routing

STATES = {
    "commands": CommandStatus,
    "process_instances": InstanceStatus,
    "batches": BatchStatus,
    "batch_items": ItemStatus,
}


def _sql_texts() -> dict[str, str]:
    root = resources.files("procession.store") / "sql"
    texts = {"queries.sql": (root / "queries.sql").read_text()}
    for backend in ("sqlite", "postgres"):
        for entry in (root / backend).iterdir():
            if entry.name.endswith(".sql"):
                texts[f"{backend}/{entry.name}"] = entry.read_text()
    return texts


def test_every_state_written_in_sql_is_a_member_of_an_enum() -> None:
    known = {s.value for enum in (*STATES.values(), Routing) for s in enum}
    literals: set[str] = set()
    for text in _sql_texts().values():
        for clause in re.findall(r"(?:status|routing)\s*(?:=|IN)\s*\(?([^)\n]*)", text):
            literals |= set(re.findall(r"'([^']*)'", clause))
    assert literals, "the pattern found no state literal at all"
    assert literals <= known, f"states in SQL that no enum declares: {literals - known}"


@pytest.mark.parametrize(("table", "enum"), list(STATES.items()))
def test_the_schema_refuses_a_state_its_enum_does_not_declare(
    store_url: str, table: str, enum: type[CommandStatus]
) -> None:
    with open_store(store_url) as store:
        constraint = f"{table}_status"
        with store.transaction(write=False) as tx:
            ddl = (
                tx.sql("SELECT sql FROM sqlite_master WHERE name = :t", {"t": table})[0][0]
                if store.backend.name == "sqlite"
                else tx.sql(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :c",
                    {"c": constraint},
                )[0][0]
            )
        declared = set(re.findall(r"'([^']*)'", ddl[ddl.index("CHECK") :].split(")")[0]))
        assert declared == {s.value for s in enum}
        with store.transaction() as tx:
            tx.sql(VALID_ROW[table])
        with pytest.raises(Exception, match=r"(?i)check") as refused, store.transaction() as tx:
            tx.sql(f"UPDATE {table} SET status = 'bogus'")
        assert type(refused.value).__name__ in ("IntegrityError", "CheckViolation")


VALID_ROW = {
    "commands": "INSERT INTO commands (command_id, type, schema_version, data, metadata, status,"
    " available_at) VALUES ('x', 't', 1, '{}', '{}', 'pending', 0)",
    "process_instances": "INSERT INTO process_instances (process, instance_id, status, version,"
    " updated_at) VALUES ('p', 'i', 'new', 0, 0)",
    "batches": "INSERT INTO batches (batch_id, owner_process, owner_instance, source, params,"
    " template, fence, max_in_flight, page_size, status, created_at, metadata)"
    " VALUES ('b', 'p', 'i', 's', '{}', 't', 0, 1, 1, 'running', 0, '{}')",
    "batch_items": "INSERT INTO batch_items (batch_id, target_id, status, updated_at)"
    " VALUES ('b', 't', 'pending', 0)",
}


class WrongShape(msgspec.Struct):
    name: str
    value: int


class RightShape(msgspec.Struct):
    name: str
    position: int


def test_a_record_is_read_by_column_name_and_a_drifted_query_is_refused(store_url: str) -> None:
    with open_store(store_url) as store, store.transaction() as tx:
        tx.set_checkpoint("x", 7)
        assert tx.records(RightShape, "all_checkpoints") == [RightShape("x", 7)]
        with pytest.raises(SchemaError, match="all_checkpoints"):
            tx.records(WrongShape, "all_checkpoints")


def test_user_sql_never_enters_the_engines_named_queries(store_url: str) -> None:
    with open_store(store_url) as store:
        before = dict(store.sql)
        with store.transaction() as tx:
            tx.session.sql("CREATE TABLE IF NOT EXISTS mine (k TEXT PRIMARY KEY)")
            tx.session.write("INSERT INTO mine (k) VALUES (:k)", {"k": "a"})
            assert tx.session.sql("SELECT k FROM mine") == [("a",)]
        assert store.sql == before == load(store.backend.name)


def test_a_failing_user_statement_raises_instead_of_returning_nothing(store_url: str) -> None:
    with open_store(store_url) as store:
        missing = r"(?i)no_such_table|does not exist|no such table"
        with pytest.raises(Exception, match=missing), store.session(write=True) as session:
            session.sql("SELECT * FROM no_such_table")
        with store.session() as session:  # a statement without rows gives [], not an error
            assert session.sql("CREATE TABLE IF NOT EXISTS t (k TEXT)") == []
