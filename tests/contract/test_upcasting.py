"""Stored payloads keep their schema version; the registry upcasts them when they are decoded.

The rows are written and read through each backend, then decoded by a registry that may be
newer than the one that wrote them - as after a deployment that changed an event's shape.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procession.errors import MalformedMessage, UnknownMessageType
from procession.messages import Event, MessageRegistry, to_dict
from procession.store import Store, open_store

NAME = "AccountOpened"


class AccountOpenedV1(Event, frozen=True, kw_only=True):
    owner: str


class AccountOpenedV2(Event, frozen=True, kw_only=True):
    owner: str
    currency: str


class AccountOpenedV3(Event, frozen=True, kw_only=True):
    holder: str
    currency: str


def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "currency": "EUR"}


def v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    rest = {k: v for k, v in data.items() if k != "owner"}
    return {**rest, "holder": data["owner"]}


def registry_v1() -> MessageRegistry:
    registry = MessageRegistry()
    registry.register(AccountOpenedV1, name=NAME)
    return registry


def registry_v2() -> MessageRegistry:
    registry = MessageRegistry()
    registry.register(AccountOpenedV2, name=NAME, version=2, upcasters={1: v1_to_v2})
    return registry


def registry_v3() -> MessageRegistry:
    registry = MessageRegistry()
    registry.register(AccountOpenedV3, name=NAME, version=3, upcasters={1: v1_to_v2, 2: v2_to_v3})
    return registry


def stored_rows(store: Store, stream_id: str) -> list[tuple[Any, ...]]:
    """Raw rows: (position, stream_id, version, type, schema_version, data, metadata)."""
    with store.transaction(write=False) as tx:
        return tx.read_stream_raw(stream_id)


def decode_row(registry: MessageRegistry, row: tuple[Any, ...]) -> Any:
    return registry.decode(row[3], row[4], row[5])


def _write_v1_then_v2(store_url: str) -> None:
    with open_store(store_url, registry_v1()) as old:
        old.append("acc", [AccountOpenedV1(owner="ada")])
    with open_store(store_url, registry_v2()) as new:
        new.append("acc", [AccountOpenedV2(owner="bob", currency="CHF")])


def test_old_rows_are_upcast_to_the_current_shape(store_url: str) -> None:
    _write_v1_then_v2(store_url)
    with open_store(store_url, registry_v2()) as store:
        rows = stored_rows(store, "acc")

    assert [(r[3], r[4]) for r in rows] == [(NAME, 1), (NAME, 2)]
    decoded = [decode_row(registry_v2(), r) for r in rows]
    assert decoded == [
        AccountOpenedV2(owner="ada", currency="EUR"),
        AccountOpenedV2(owner="bob", currency="CHF"),
    ]


def test_upcasters_chain_across_versions(store_url: str) -> None:
    _write_v1_then_v2(store_url)
    with open_store(store_url, registry_v3()) as store:
        rows = stored_rows(store, "acc")
        decoded = [decode_row(store.registry, r) for r in rows]
    assert decoded == [
        AccountOpenedV3(holder="ada", currency="EUR"),
        AccountOpenedV3(holder="bob", currency="CHF"),
    ]


def test_read_all_returns_payloads_as_stored_not_upcast(store_url: str) -> None:
    """`RecordedEvent` is the audit view: its data and schema_version are what was written."""
    _write_v1_then_v2(store_url)
    with open_store(store_url, registry_v2()) as store:
        first, second = store.read_all()
    assert (first.schema_version, first.data) == (1, {"owner": "ada"})
    assert (second.schema_version, second.data) == (2, {"owner": "bob", "currency": "CHF"})
    # ...and the record carries all that is needed to decode it
    raw = msgspec.json.encode(first.data)
    upcast = store.registry.decode(first.type, first.schema_version, raw)
    assert upcast == AccountOpenedV2(owner="ada", currency="EUR")


def test_missing_upcaster_is_a_malformed_message(store_url: str) -> None:
    with open_store(store_url, registry_v1()) as old:
        old.append("acc", [AccountOpenedV1(owner="ada")])
        [row] = stored_rows(old, "acc")
    no_upcasters = MessageRegistry()
    no_upcasters.register(AccountOpenedV2, name=NAME, version=2)

    with pytest.raises(MalformedMessage, match=r"AccountOpened: no upcaster from version 1"):
        decode_row(no_upcasters, row)


def test_registering_an_incomplete_upcaster_chain_is_refused() -> None:
    registry = MessageRegistry()
    with pytest.raises(ValueError, match=r"AccountOpened: no upcaster from version\(s\) \[1\]"):
        registry.register(AccountOpenedV3, name=NAME, version=3, upcasters={2: v2_to_v3})


def test_upcaster_producing_a_bad_shape_is_a_malformed_message(store_url: str) -> None:
    with open_store(store_url, registry_v1()) as old:
        old.append("acc", [AccountOpenedV1(owner="ada")])
        [row] = stored_rows(old, "acc")
    sloppy = MessageRegistry()
    sloppy.register(AccountOpenedV2, name=NAME, version=2, upcasters={1: lambda d: d})

    with pytest.raises(MalformedMessage, match=r"AccountOpened v1: .*currency"):
        decode_row(sloppy, row)


def test_row_newer_than_the_program_is_a_malformed_message(store_url: str) -> None:
    _write_v1_then_v2(store_url)
    with open_store(store_url, registry_v1()) as store:
        rows = stored_rows(store, "acc")
    assert decode_row(registry_v1(), rows[0]) == AccountOpenedV1(owner="ada")
    with pytest.raises(MalformedMessage, match=r"AccountOpened v2 is newer than .* v1"):
        decode_row(registry_v1(), rows[1])


def test_unregistered_stored_type_is_unknown(store_url: str) -> None:
    with open_store(store_url, registry_v1()) as store:
        store.append("acc", [AccountOpenedV1(owner="ada")])
        [row] = stored_rows(store, "acc")
    with pytest.raises(UnknownMessageType, match=r"'AccountOpened' is not registered"):
        decode_row(MessageRegistry(), row)


def test_payload_of_the_wrong_shape_is_a_malformed_message(store_url: str) -> None:
    with open_store(store_url, registry_v1()) as store:
        store.append("acc", [AccountOpenedV1(owner="ada")])
        with store.transaction() as tx:
            tx.sql("UPDATE events SET data = :data", {"data": '{"owner": 42}'})
        [row] = stored_rows(store, "acc")
    with pytest.raises(MalformedMessage, match=r"AccountOpened v1: .*owner"):
        decode_row(registry_v1(), row)


@pytest.mark.parametrize("version", [1, 2], ids=["current-version", "older-version"])
def test_payload_that_is_not_json_is_a_malformed_message(store_url: str, version: int) -> None:
    registry = registry_v1() if version == 1 else registry_v2()
    with open_store(store_url, registry_v1()) as store:
        store.append("acc", [AccountOpenedV1(owner="ada")])
        with store.transaction() as tx:
            tx.sql("UPDATE events SET data = :data", {"data": "{not json"})
        [row] = stored_rows(store, "acc")
    with pytest.raises(MalformedMessage, match="AccountOpened"):
        decode_row(registry, row)


# -- property: whatever a message holds comes back unchanged --------------------------------


class Note(Event, frozen=True, kw_only=True):
    text: str
    count: int
    tags: list[str]
    extra: str | None = None


texts = st.text(max_size=200)
notes = st.builds(
    Note,
    text=texts,
    count=st.integers(),
    tags=st.lists(texts, max_size=5),
    extra=st.none() | texts,
)


def test_any_message_roundtrips_through_the_store(store_url: str) -> None:
    registry = MessageRegistry()
    registry.register(Note, name="notes.Note")
    streams = (f"note-{i}" for i in itertools.count())

    with open_store(store_url, registry) as store:

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(note=notes)
        def roundtrip(note: Note) -> None:
            stream = next(streams)
            store.append(stream, [note])
            [row] = stored_rows(store, stream)
            assert decode_row(registry, row) == note
            [record] = store.read_stream(stream)
            assert record.data == to_dict(note)
            assert registry.decode(record.type, 1, msgspec.json.encode(record.data)) == note

        roundtrip()
