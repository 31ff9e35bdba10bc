"""Every error procession raises derives from ProcessionError and names its problem."""

from __future__ import annotations


class ProcessionError(Exception):
    """Base class: catch this to handle any procession failure."""


class ConfigurationError(ProcessionError, ValueError):
    """The store URL, schema or application wiring is wrong."""


class StoreUnavailable(ProcessionError):
    """The database could not be reached or opened."""


class SchemaError(ProcessionError):
    """The database holds a schema procession does not recognise."""


class ReadOnlyStore(ProcessionError):
    """A write through a store opened read-only (`open_store(url, readonly=True)`)."""


class ConcurrencyError(ProcessionError):
    """An append expected a stream version that is no longer current."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, the append expected {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class UnknownMessageType(ProcessionError):
    """A stored or submitted message names a type that is not registered."""


class MalformedMessage(ProcessionError):
    """A payload does not match its message type's schema."""


class CommandRejected(ProcessionError):
    """The domain refused a command (an illegal transition, a rule that does not hold).

    In a batch, a rejected command marks its item *failed*.
    """


class Skipped(CommandRejected):
    """The domain says the command does not apply; in a batch, the item is *skipped*."""


class NotFound(CommandRejected):
    """The command names an aggregate that does not exist."""


class ProcessError(ProcessionError):
    """A process manager received a message its routing does not allow (strict routing)."""
