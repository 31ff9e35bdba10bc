"""One failure policy for process steps, commands and projections.

Whatever fails (a process step, an outbox command, a projection at one event), the engine
builds a `Failure` (what failed, how often, since when, the previous error) and asks the
`on_error` hook of the thing that failed, as Commanded's `error/3` does. The hook returns a
decision: `Retry()` at once or `Retry(delay)` later, `Park()` (an operator retries or skips
it), or `SkipMessage()` (drop the message and go on). The default hook is a declared
`RetryPolicy(max_attempts, backoff)`: retry with exponential backoff, then park; mistakes
that no retry can fix (a configuration error, a message that breaks strict routing, a
payload that does not decode) park at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from procession.errors import (
    ConfigurationError,
    MalformedMessage,
    ProcessError,
    UnknownMessageType,
)
from procession.messages import Message

PERMANENT: tuple[type[Exception], ...] = (
    ConfigurationError,
    ProcessError,
    MalformedMessage,
    UnknownMessageType,
)
"""Errors a retry cannot fix: the default policy parks them on the first failure."""


@dataclass(frozen=True)
class Failure:
    """The failure context handed to `on_error`; it survives retries (attempts are counted
    and the first failure's time kept in the store)."""

    error: Exception
    attempt: int
    """1 when the first try failed, 2 when the first retry failed, ..."""
    first_failed_at: float
    """Process time (seconds since the epoch) of the first failure of this message."""
    last_error: str | None = None
    """The previous attempt's error, as stored; None on the first failure."""
    message: Message | None = None
    """The message that failed, if it could be decoded."""
    subject: str = ""
    """What failed: `process:<name>/<instance>`, `command:<type>`, `projection:<name>`."""


@dataclass(frozen=True)
class Retry:
    """Try again after `delay` (zero: at the next round)."""

    delay: timedelta = timedelta()


@dataclass(frozen=True)
class Park:
    """Stop this one thing until an operator retries or skips it."""


@dataclass(frozen=True)
class SkipMessage:
    """Drop the failed message (a projection moves past the event) and go on."""


Decision = Retry | Park | SkipMessage
OnError = Callable[[Failure], Decision]


def exponential(base: float = 1.0, cap: float = 300.0) -> Callable[[int], float]:
    """Seconds to wait after failed attempt n: base, 2 base, 4 base, ..., at most cap."""

    def backoff(attempt: int) -> float:
        return float(min(base * 2 ** (attempt - 1), cap))

    return backoff


@dataclass(frozen=True)
class RetryPolicy:
    """Retry with backoff up to `max_attempts` tries in all, then park."""

    max_attempts: int = 5
    backoff: Callable[[int], float] = field(default_factory=exponential)
    """Seconds to wait after failed attempt n."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, not {self.max_attempts}")

    def decide(self, failure: Failure) -> Decision:
        if isinstance(failure.error, PERMANENT) or failure.attempt >= self.max_attempts:
            return Park()
        return Retry(timedelta(seconds=self.backoff(failure.attempt)))


DEFAULT_POLICY = RetryPolicy()


def describe(error: BaseException) -> str:
    """An error as stored and shown to operators: its type and message on one line."""
    return " ".join(f"{type(error).__name__}: {error}".split())


def consult(on_error: OnError | None, failure: Failure) -> tuple[Decision, str]:
    """Ask `on_error` about a failure: its decision, and the error to store.

    None for a message that cannot even be decoded: nothing can decide about it, it parks.

    A hook that raises, or returns no decision (say None), parks the thing that failed, and
    the stored error says why: a mistake in the hook must stop that one thing, never the
    stage (every other instance, command or consumer) it runs in, nor drop the message.
    """
    error = describe(failure.error)
    if on_error is None:
        return Park(), error
    try:
        decision = on_error(failure)
    except Exception as exc:
        return Park(), f"{error} (and its on_error failed: {describe(exc)})"
    if not isinstance(decision, Retry | Park | SkipMessage):
        return Park(), f"{error} (and its on_error returned {decision!r}, not a decision)"
    return decision, error
