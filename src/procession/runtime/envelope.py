"""Message metadata: ids, correlation, causation and time, carried by every stored message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from procession.messages import Message, MessageRegistry
from procession.store.base import encode_json, iso

_decode = msgspec.json.decode


def metadata(
    message_id: str,
    correlation_id: str | None,
    causation_id: str | None,
    occurred_at: float,
    **extra: Any,
) -> dict[str, Any]:
    meta = {
        "message_id": message_id,
        "correlation_id": correlation_id or message_id,
        "causation_id": causation_id,
        "occurred_at": iso(occurred_at),
    }
    meta.update(extra)
    return meta


def message_time(meta: dict[str, Any]) -> float:
    return datetime.fromisoformat(meta["occurred_at"]).timestamp()


def message_row(
    registry: MessageRegistry, message: Message, meta: dict[str, Any]
) -> dict[str, Any]:
    """The columns a stored message (command, inbox entry, timer) is kept in."""
    name, version, data = registry.encode(message)
    return {"type": name, "schema_version": version, "data": data, "metadata": encode_json(meta)}


def load_meta(text: str) -> dict[str, Any]:
    meta: dict[str, Any] = _decode(text)
    return meta
