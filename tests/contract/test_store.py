"""Appending and reading: per-stream order, the global log, records and optimistic concurrency.

Every test runs once per backend (the `store_url` fixture); `read_all` is the public audit API
and is exercised only through `procession.store.open_store(url)`.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import msgspec
import pytest

from contract.support import (
    Counted,
    Deposited,
    NotRegistered,
    Withdrawn,
    deposits,
    make_registry,
)
from procession.errors import ConcurrencyError, UnknownMessageType
from procession.messages import MessageRegistry, to_dict
from procession.store import ANY, NO_STREAM, RecordedEvent, Store, open_store


def positions(records: list[RecordedEvent]) -> list[int]:
    return [r.position for r in records]


# -- append and read_stream ------------------------------------------------------------------


def test_append_returns_new_version_and_position_of_last_event(store: Store) -> None:
    first = store.append("acc-1", deposits(10, 20, 30), NO_STREAM)
    second = store.append("acc-1", deposits(40), expected_version=3)

    assert first.version == 3
    assert second.version == 4
    stored = store.read_stream("acc-1")
    assert first.position == stored[2].position
    assert second.position == stored[3].position
    assert second.position > first.position


def test_read_stream_returns_only_that_stream_in_version_order(store: Store) -> None:
    for round_ in range(3):
        store.append("a", deposits(round_, account="a"))
        store.append("b", deposits(100 + round_, account="b"))

    a = store.read_stream("a")
    assert [r.stream_id for r in a] == ["a"] * 3
    assert [r.version for r in a] == [1, 2, 3]
    assert [r.data["amount"] for r in a] == [0, 1, 2]
    assert positions(a) == sorted(positions(a))
    assert [r.data["amount"] for r in store.read_stream("b")] == [100, 101, 102]


def test_read_stream_from_version_is_inclusive(store: Store) -> None:
    store.append("s", deposits(1, 2, 3, 4, 5))

    assert [r.version for r in store.read_stream("s", from_version=3)] == [3, 4, 5]
    assert [r.version for r in store.read_stream("s", from_version=5)] == [5]
    assert store.read_stream("s", from_version=6) == []
    assert [r.version for r in store.read_stream("s", from_version=0)] == [1, 2, 3, 4, 5]


def test_read_stream_of_unknown_stream_is_empty(store: Store) -> None:
    store.append("exists", deposits(1))
    assert store.read_stream("does-not-exist") == []


def test_versions_continue_across_appends_and_transactions(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.append("s", deposits(1), NO_STREAM) == 1
        assert tx.append("s", deposits(2, 3), expected_version=1) == 3
    assert store.append("s", deposits(4), expected_version=3).version == 4
    assert [r.version for r in store.read_stream("s")] == [1, 2, 3, 4]


# -- records ------------------------------------------------------------------------------------


def test_recorded_event_has_the_audit_shape(store: Store, registry: MessageRegistry) -> None:
    stamped = store.using(now=lambda: 1_700_000_000.25)
    event = Withdrawn(account="acc-9", amount=7, note="ünïcødé € 🎉")
    result = stamped.append("acc-9", [event], NO_STREAM)

    with open_store(store.url, registry) as reader:
        [rec] = list(reader.read_all())
    assert isinstance(rec, RecordedEvent)
    assert rec.position == result.position
    assert rec.stream_id == "acc-9"
    assert rec.version == 1
    assert rec.type == "Withdrawn"
    assert rec.schema_version == 1
    assert isinstance(rec.data, dict)
    assert rec.data == {"account": "acc-9", "amount": 7, "note": "ünïcødé € 🎉"}
    assert isinstance(rec.metadata, dict)
    assert {"message_id", "correlation_id", "causation_id", "occurred_at"} <= set(rec.metadata)
    assert datetime.fromisoformat(rec.metadata["occurred_at"]) == datetime.fromtimestamp(
        1_700_000_000.25, UTC
    )


def test_type_is_the_registered_name_not_the_class_name(store: Store) -> None:
    store.append("s", deposits(5))
    [rec] = store.read_stream("s")
    assert rec.type == "bank.Deposited"


def test_metadata_ids_default_and_propagate(store: Store) -> None:
    store.append("s", deposits(1, 2))
    store.append("s", deposits(3), correlation_id="corr-1", causation_id="cause-1")
    first, second, third = store.read_stream("s")

    ids = {rec.metadata["message_id"] for rec in (first, second, third)}
    assert len(ids) == 3, "every event gets its own message_id"
    for rec in (first, second):
        # an event that starts a conversation correlates with itself and has no cause
        assert rec.metadata["correlation_id"] == rec.metadata["message_id"]
        assert rec.metadata["causation_id"] is None
    assert third.metadata["correlation_id"] == "corr-1"
    assert third.metadata["causation_id"] == "cause-1"


def test_occurred_at_is_an_aware_timestamp_near_now(store: Store) -> None:
    before = datetime.now(UTC)
    store.append("s", deposits(1))
    after = datetime.now(UTC)
    [rec] = store.read_stream("s")
    stamp = datetime.fromisoformat(rec.metadata["occurred_at"])
    assert stamp.tzinfo is not None
    assert before.timestamp() - 1 <= stamp.timestamp() <= after.timestamp() + 1


def test_payload_roundtrips_through_the_log(store: Store, registry: MessageRegistry) -> None:
    events = [
        Withdrawn(account="a", amount=-(2**62), note=None),
        Withdrawn(account="quote ' and \" and % and :name", amount=0, note="\x00\n\t"),
    ]
    store.append("odd", events)
    stored = store.read_stream("odd")
    assert [r.data for r in stored] == [to_dict(e) for e in events]
    decoded = [
        registry.decode(r.type, r.schema_version, msgspec.json.encode(r.data)) for r in stored
    ]
    assert decoded == events


# -- read_all -----------------------------------------------------------------------------------


def _seed(store: Store, count: int = 10) -> None:
    for i in range(count):
        store.append(f"stream-{i % 3}", [Counted(n=i)])


def test_read_all_is_the_global_order_of_appends(store_url: str, registry: MessageRegistry) -> None:
    with open_store(store_url, registry) as store:
        _seed(store)
    with open_store(store_url, registry) as reader:
        records = list(reader.read_all())

    assert [r.data["n"] for r in records] == list(range(10))
    assert positions(records) == sorted(set(positions(records)))
    assert [(r.stream_id, r.version) for r in records[:4]] == [
        ("stream-0", 1),
        ("stream-1", 1),
        ("stream-2", 1),
        ("stream-0", 2),
    ]


def test_read_all_from_position_is_inclusive(store_url: str, registry: MessageRegistry) -> None:
    with open_store(store_url, registry) as store:
        _seed(store)
        everything = list(store.read_all())
        third = everything[2].position

        tail = list(store.read_all(from_position=third))
        assert positions(tail) == positions(everything[2:])
        assert positions(list(store.read_all(from_position=everything[-1].position))) == [
            everything[-1].position
        ]
        assert list(store.read_all(from_position=everything[-1].position + 1)) == []
        assert positions(list(store.read_all(from_position=0))) == positions(everything)


def test_read_all_limit(store_url: str, registry: MessageRegistry) -> None:
    with open_store(store_url, registry) as store:
        _seed(store)
        everything = positions(list(store.read_all()))

        assert positions(list(store.read_all(limit=3))) == everything[:3]
        assert positions(list(store.read_all(limit=0))) == []
        assert positions(list(store.read_all(limit=100))) == everything
        # a limit larger than a page, with pages that do not divide it
        assert positions(list(store.read_all(limit=7, page_size=3))) == everything[:7]
        assert positions(list(store.read_all(limit=6, page_size=3))) == everything[:6]
        start = everything[4]
        assert positions(list(store.read_all(from_position=start, limit=2))) == everything[4:6]


def test_read_all_pages_see_every_event_once(store_url: str, registry: MessageRegistry) -> None:
    with open_store(store_url, registry) as store:
        _seed(store, 25)
        expected = positions(list(store.read_all()))
        for page_size in (1, 2, 5, 24, 25, 26):
            assert positions(list(store.read_all(page_size=page_size))) == expected


@pytest.mark.parametrize("page_size", [0, -1])
def test_read_all_rejects_a_page_size_below_one(store: Store, page_size: int) -> None:
    _seed(store, 3)
    with pytest.raises(ValueError, match="page_size"):
        list(store.read_all(page_size=page_size))


def test_read_all_of_an_empty_store_is_empty(store_url: str) -> None:
    with open_store(store_url) as store:
        assert list(store.read_all()) == []
        assert store.head_position() == 0


def test_read_all_sees_events_appended_by_another_store(
    store_url: str, registry: MessageRegistry
) -> None:
    with open_store(store_url, registry) as writer, open_store(store_url, registry) as reader:
        writer.append("s", deposits(1))
        [first] = list(reader.read_all())
        writer.append("s", deposits(2))
        [second] = list(reader.read_all(from_position=first.position + 1))
        assert second.data["amount"] == 2
        assert second.position > first.position


# -- optimistic concurrency ----------------------------------------------------------------


def _three_events(store: Store) -> None:
    store.append("s", deposits(1, 2, 3), NO_STREAM)


@pytest.mark.parametrize("expected", [0, 1, 2, 4, 10], ids=lambda v: f"expected={v}")
def test_wrong_expected_version_raises_and_appends_nothing(store: Store, expected: int) -> None:
    _three_events(store)
    head = store.head_position()

    with pytest.raises(ConcurrencyError) as caught:
        store.append("s", deposits(99), expected_version=expected)

    assert caught.value.stream_id == "s"
    assert caught.value.expected == expected
    assert caught.value.actual == 3
    assert "'s'" in str(caught.value)
    assert "3" in str(caught.value)
    assert [r.data["amount"] for r in store.read_stream("s")] == [1, 2, 3]
    assert store.head_position() == head


def test_no_stream_on_an_existing_stream_conflicts(store: Store) -> None:
    store.append("s", deposits(1))
    with pytest.raises(ConcurrencyError):
        store.append("s", deposits(2), NO_STREAM)
    assert len(store.read_stream("s")) == 1


def test_matching_and_any_expected_versions_append(store: Store) -> None:
    assert store.append("s", deposits(1), NO_STREAM).version == 1
    assert store.append("s", deposits(2), expected_version=1).version == 2
    assert store.append("s", deposits(3), ANY).version == 3
    assert store.append("s", deposits(4)).version == 4  # ANY is the default


def test_conflict_inside_a_transaction_rolls_back_its_earlier_appends(store: Store) -> None:
    store.append("taken", deposits(1))
    with pytest.raises(ConcurrencyError), store.transaction() as tx:
        tx.append("fresh", deposits(1), NO_STREAM)
        tx.append("taken", deposits(2), NO_STREAM)
    assert store.read_stream("fresh") == []
    assert len(store.read_stream("taken")) == 1


def test_failing_transaction_appends_nothing(store: Store) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction() as tx:
        tx.append("s", deposits(1, 2))
        raise Boom
    assert store.read_stream("s") == []
    assert list(store.read_all()) == []


def test_append_batch_is_all_or_nothing(store: Store) -> None:
    store.append("existing", deposits(1))
    head = store.head_position()

    with pytest.raises(ConcurrencyError) as caught:
        store.append_batch(
            [
                ("new-1", deposits(1, 2), NO_STREAM),
                ("existing", deposits(2), 5),  # actual version is 1
                ("new-2", deposits(3), NO_STREAM),
            ]
        )

    assert caught.value.stream_id == "existing"
    assert store.read_stream("new-1") == []
    assert store.read_stream("new-2") == []
    assert len(store.read_stream("existing")) == 1
    assert store.head_position() == head


def test_append_batch_appends_every_stream(store: Store) -> None:
    store.append("existing", deposits(1))
    head = store.append_batch(
        [
            ("new-1", deposits(1, 2), NO_STREAM),
            ("existing", deposits(2), 1),
            ("new-1", deposits(3), 2),  # the same stream twice in one batch
        ]
    )
    assert [r.version for r in store.read_stream("new-1")] == [1, 2, 3]
    assert [r.version for r in store.read_stream("existing")] == [1, 2]
    assert head == store.head_position() == max(positions(list(store.read_all())))


def test_racing_appenders_with_the_same_expected_version_one_wins(
    store_url: str, registry: MessageRegistry
) -> None:
    """Two stores (two connections) append to one stream at the same moment: one conflicts."""
    with open_store(store_url, registry) as one, open_store(store_url, registry) as two:
        for round_ in range(10):
            stream = f"race-{round_}"
            assert sorted(_race(stream, one, two)) == ["conflict", "ok"]
            assert len(one.read_stream(stream)) == 1


def _race(stream: str, *stores: Store) -> list[str]:
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def run(store: Store, amount: int) -> None:
        barrier.wait()
        try:
            store.append(stream, deposits(amount), NO_STREAM)
            outcomes.append("ok")
        except ConcurrencyError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=run, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


# -- bad messages -------------------------------------------------------------------------------


def test_appending_an_unregistered_type_raises_and_appends_nothing(store: Store) -> None:
    with pytest.raises(UnknownMessageType, match=r"NotRegistered.*not registered"):
        store.append("s", [Deposited(account="a", amount=1), NotRegistered(n=1)])
    assert store.read_stream("s") == []
    assert store.head_position() == 0


def test_a_store_without_a_registry_knows_no_types(store_url: str) -> None:
    with open_store(store_url) as bare, pytest.raises(UnknownMessageType):
        bare.append("s", [Counted(n=1)])
    with open_store(store_url, make_registry()) as store:
        assert store.read_stream("s") == []


def test_an_immediate_write_inside_a_failed_savepoint_is_undone(store: Store) -> None:
    with store.transaction() as tx:
        tx.sql("CREATE TABLE scratch (n INTEGER)")
    with store.transaction() as tx:
        tx.sql("INSERT INTO scratch (n) VALUES (1)")
        with pytest.raises(RuntimeError), tx.savepoint():
            tx.sql("INSERT INTO scratch (n) VALUES (2)")
            raise RuntimeError("the step failed after writing")
        tx.sql("INSERT INTO scratch (n) VALUES (3)")
    with store.transaction() as tx:
        assert tx.sql("SELECT n FROM scratch ORDER BY n") == [(1,), (3,)]
