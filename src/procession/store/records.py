"""Records the store returns. `RecordedEvent` is the public audit shape: keep it stable."""

from __future__ import annotations

from typing import Any

import msgspec

RawEvent = tuple[int, str, int, str, int, str, str]
"""A log row as the engine's consumers read it, undecoded: (position, stream_id, version,
type, schema_version, data, metadata). The router and projections decode only the types they
want; `RecordedEvent` is the decoded, public shape."""

ANY = -1
"""expected_version that skips the concurrency check."""
NO_STREAM = 0
"""expected_version of a stream that must not exist yet."""


class RecordedEvent(msgspec.Struct, frozen=True):
    """One event as stored: `position` in the global log, `version` in its stream.

    `data` is the payload as stored (older schema versions are not upcast here: this is the
    audit view); `metadata` holds message_id, correlation_id, causation_id and occurred_at.
    """

    position: int
    stream_id: str
    version: int
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]


class AppendResult(msgspec.Struct, frozen=True):
    """The stream version and global position of the last event appended."""

    version: int
    position: int
