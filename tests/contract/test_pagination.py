"""`read_all` streams a long log page by page without losing or repeating an event."""

from __future__ import annotations

import time
from typing import Any

from contract.support import Counted
from procession.messages import MessageRegistry
from procession.store import NO_STREAM, Store, open_store

TOTAL = 100_000
STREAMS_PER_BATCH = 10
EVENTS_PER_STREAM = 1_000
PAGE_SIZE = 997  # prime: pages never line up with the batches


def _count_transactions(store: Store) -> list[int]:
    """Count the transactions `store` opens from now on (read_all takes one per page)."""
    counter = [0]
    original = store.transaction

    def counting(write: bool = True) -> Any:
        counter[0] += 1
        return original(write)

    store.transaction = counting  # type: ignore[method-assign]
    return counter


def test_read_all_pages_through_100k_events(store_url: str, registry: MessageRegistry) -> None:
    started = time.monotonic()
    with open_store(store_url, registry) as store:
        n = 0
        for batch in range(TOTAL // (STREAMS_PER_BATCH * EVENTS_PER_STREAM)):
            appends = []
            for s in range(STREAMS_PER_BATCH):
                events = [Counted(n=n + i) for i in range(EVENTS_PER_STREAM)]
                n += EVENTS_PER_STREAM
                appends.append((f"s-{batch}-{s}", events, NO_STREAM))
            store.append_batch(appends)
        assert n == TOTAL

    with open_store(store_url, registry) as reader:
        pages = _count_transactions(reader)
        seen: list[int] = []
        last, last_n = 0, -1
        stream_versions: dict[str, int] = {}
        for rec in reader.read_all(page_size=PAGE_SIZE):
            seen.append(rec.position)
            assert rec.position > last, f"position {rec.position} after {last}"
            last = rec.position
            assert rec.data["n"] == last_n + 1, "events come back in the order appended"
            last_n = rec.data["n"]
            assert rec.version == stream_versions.get(rec.stream_id, 0) + 1
            stream_versions[rec.stream_id] = rec.version
        assert len(seen) == TOTAL
        assert len(set(seen)) == TOTAL
        assert len(stream_versions) == TOTAL // EVENTS_PER_STREAM
        assert set(stream_versions.values()) == {EVENTS_PER_STREAM}
        assert pages[0] >= TOTAL // PAGE_SIZE, "read_all must page, one short read per page"

        # resuming from a checkpoint in the middle of a page continues exactly there
        index = TOTAL // 2 + 13
        resumed = list(reader.read_all(from_position=seen[index], limit=3 * PAGE_SIZE))
        assert len(resumed) == 3 * PAGE_SIZE
        assert [r.position for r in resumed] == seen[index : index + 3 * PAGE_SIZE]
        assert resumed[0].data["n"] == index
    assert time.monotonic() - started < 60
