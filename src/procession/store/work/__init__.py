"""The engine's work tables, typed: states as enums, rows as records, writes as functions.

Everything outside `procession.store` reaches the commands, inbox, instances, timers,
batches, batch items, checkpoints and consumer failures through this package, never by a
row's position.
"""

from procession.states import (
    ACTIVE_BATCH,
    OPEN_ITEM,
    BatchStatus,
    CommandStatus,
    InstanceStatus,
    ItemStatus,
    Routing,
)
from procession.store.work import batches, commands, consumers, instances, timers, workers
from procession.store.work.records import (
    BatchRow,
    ClaimedCommand,
    ClaimedInstance,
    ConsumerFailure,
    Delivery,
    DueTimer,
    InstanceRow,
    KnownCommand,
    ParkedCommand,
    ParkedDelivery,
    TimerRow,
    WorkerRow,
)

__all__ = [
    "ACTIVE_BATCH",
    "OPEN_ITEM",
    "BatchRow",
    "BatchStatus",
    "ClaimedCommand",
    "ClaimedInstance",
    "CommandStatus",
    "ConsumerFailure",
    "Delivery",
    "DueTimer",
    "InstanceRow",
    "InstanceStatus",
    "ItemStatus",
    "KnownCommand",
    "ParkedCommand",
    "ParkedDelivery",
    "Routing",
    "TimerRow",
    "WorkerRow",
    "batches",
    "commands",
    "consumers",
    "instances",
    "timers",
    "workers",
]
