"""Rows of the work tables as typed records, built by column name.

A record's fields are named like the columns its query selects, in the same order. The
first time a query feeds a record type, `Tx.records` checks the cursor's column names
against the fields, so a query and its record cannot drift apart silently; after that a row
becomes a record by position, at the speed of a tuple.
"""

from __future__ import annotations

import msgspec


class ClaimedInstance(msgspec.Struct):
    process: str
    instance_id: str
    status: str
    state: str | None
    version: int
    last_position: int
    seen: str | None
    timers: str | None
    wait_until: float


class Delivery(msgspec.Struct):
    process: str
    instance_id: str
    id: int
    routing: str
    type: str
    schema_version: int
    data: str
    metadata: str
    attempts: int
    available_at: float
    parked: int
    first_failed_at: float | None
    error: str | None


class InstanceRow(msgspec.Struct):
    status: str
    state: str | None
    version: int
    updated_at: float


class ParkedDelivery(msgspec.Struct):
    id: int
    process: str
    instance_id: str
    type: str
    data: str
    metadata: str
    attempts: int
    error: str | None


class ClaimedCommand(msgspec.Struct):
    command_id: str
    type: str
    schema_version: int
    data: str
    metadata: str
    attempts: int
    first_failed_at: float | None
    error: str | None


class KnownCommand(msgspec.Struct):
    status: str
    result: str | None
    error: str | None
    type: str


class ParkedCommand(msgspec.Struct):
    command_id: str
    type: str
    data: str
    metadata: str
    attempts: int
    error: str | None


class DueTimer(msgspec.Struct):
    process: str
    instance_id: str
    name: str
    due_at: float
    type: str
    schema_version: int
    data: str
    metadata: str


class TimerRow(msgspec.Struct):
    name: str
    due_at: float
    type: str


class BatchRow(msgspec.Struct):
    batch_id: str
    owner_process: str
    owner_instance: str
    source: str
    params: str
    template: str
    fence: int
    max_in_flight: int
    page_size: int
    cursor: str | None
    status: str
    total: int
    created_at: float
    metadata: str
    completed_at: float | None
    superseded_by: str | None


class BatchControl(msgspec.Struct):
    """What an operator controls of a batch (migration 005): pause, throttle, rate limit."""

    batch_id: str
    status: str
    paused: int
    max_in_flight: int
    rate_items: int | None
    rate_per_seconds: float | None


class ConsumerFailure(msgspec.Struct):
    name: str
    position: int
    attempts: int
    first_failed_at: float
    error: str
    parked: int
    until: float


class WorkerRow(msgspec.Struct):
    worker_id: str
    host: str
    pid: int
    started_at: float
    seen_at: float
    stopped_at: float | None
    rounds: int
