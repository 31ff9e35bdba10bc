"""The work tables' states: `procession.states`, where the contracts of `process/` read them
too (it is the bottom layer); the schema's CHECK constraints list the same values."""

from procession.states import (
    ACTIVE_BATCH,
    OPEN_ITEM,
    BatchStatus,
    CommandStatus,
    InstanceStatus,
    ItemStatus,
    Routing,
)

__all__ = [
    "ACTIVE_BATCH",
    "OPEN_ITEM",
    "BatchStatus",
    "CommandStatus",
    "InstanceStatus",
    "ItemStatus",
    "Routing",
]
