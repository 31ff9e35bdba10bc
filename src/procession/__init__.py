"""procession: durable process managers, timers and batch fan-out for event-sourced Python.

The public surface is re-exported here; see README.md for a tour.
"""

from __future__ import annotations

from importlib import metadata

from procession.aggregate import Aggregate
from procession.app import App, HandlerContext
from procession.errors import (
    CommandRejected,
    ConcurrencyError,
    ConfigurationError,
    MalformedMessage,
    NotFound,
    ProcessError,
    ProcessionError,
    ReadOnlyStore,
    SchemaError,
    Skipped,
    StoreUnavailable,
    UnknownMessageType,
)
from procession.ids import derived_id, new_id
from procession.limits import Limits
from procession.messages import Command, Event, Message, MessageRegistry
from procession.policy import Decision, Failure, Park, Retry, RetryPolicy, SkipMessage
from procession.process.batch import BatchProgress, BatchTemplate, TargetSource
from procession.process.effects import (
    BatchCancelRequested,
    BatchCompleted,
    BatchControlEvent,
    BatchPaused,
    BatchResumed,
    BatchThrottled,
    CancelBatch,
    CancelTimer,
    Complete,
    RateLimit,
    Schedule,
    StartBatch,
    TimerFired,
)
from procession.process.manager import (
    ProcessManager,
    Route,
    StepContext,
    continue_,
    start,
    stop,
)
from procession.projection import EventInfo, Projection
from procession.runtime import operations
from procession.runtime.clock import Clock, SystemClock, VirtualClock
from procession.runtime.commands import CommandResult
from procession.runtime.liveness import Heartbeat
from procession.runtime.operations import BatchNotFound, BatchRefused
from procession.runtime.runtime import RunStats, Runtime, reconnecting, retry_delay
from procession.session import Session
from procession.store import (
    ANY,
    NO_STREAM,
    AppendResult,
    RecordedEvent,
    Store,
    Tx,
    connection_lost,
    open_store,
)
from procession.store.base import iso

try:
    __version__ = metadata.version("procession")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ANY",
    "NO_STREAM",
    "Aggregate",
    "App",
    "AppendResult",
    "BatchCancelRequested",
    "BatchCompleted",
    "BatchControlEvent",
    "BatchNotFound",
    "BatchPaused",
    "BatchProgress",
    "BatchRefused",
    "BatchResumed",
    "BatchTemplate",
    "BatchThrottled",
    "CancelBatch",
    "CancelTimer",
    "Clock",
    "Command",
    "CommandRejected",
    "CommandResult",
    "Complete",
    "ConcurrencyError",
    "ConfigurationError",
    "Decision",
    "Event",
    "EventInfo",
    "Failure",
    "HandlerContext",
    "Heartbeat",
    "Limits",
    "MalformedMessage",
    "Message",
    "MessageRegistry",
    "NotFound",
    "Park",
    "ProcessError",
    "ProcessManager",
    "ProcessionError",
    "Projection",
    "RateLimit",
    "ReadOnlyStore",
    "RecordedEvent",
    "Retry",
    "RetryPolicy",
    "Route",
    "RunStats",
    "Runtime",
    "Schedule",
    "SchemaError",
    "Session",
    "SkipMessage",
    "Skipped",
    "StartBatch",
    "StepContext",
    "Store",
    "StoreUnavailable",
    "SystemClock",
    "TargetSource",
    "TimerFired",
    "Tx",
    "UnknownMessageType",
    "VirtualClock",
    "connection_lost",
    "continue_",
    "derived_id",
    "iso",
    "new_id",
    "open_store",
    "operations",
    "reconnecting",
    "retry_delay",
    "start",
    "stop",
]
