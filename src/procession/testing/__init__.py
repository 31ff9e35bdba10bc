"""The testing kit: given / when / then for aggregates and process managers.

Aggregate scenarios are pure (no database). Process scenarios run the real engine (router,
steps, timers) on an in-memory SQLite store with a virtual clock, so `advance(days=3)` fires
exactly the timers a production run would, through the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Generic, TypeVar

import msgspec

from procession.aggregate import Aggregate
from procession.app import App
from procession.messages import Command, Event, Message, MessageRegistry, MessageType
from procession.process.effects import ENGINE_MESSAGES
from procession.process.manager import ProcessManager
from procession.runtime.clock import VirtualClock
from procession.runtime.runtime import Runtime
from procession.store import open_store
from procession.store.work import commands, instances, timers

S = TypeVar("S")


class _LenientRegistry(MessageRegistry):
    """Registers message classes on first sight: a process test need not list its commands."""

    def type_of(self, message: Message) -> MessageType:
        if type(message) not in self._by_cls:
            self.register(type(message))
        return super().type_of(message)


def _plain(messages: Sequence[Message]) -> list[tuple[str, dict[str, Any]]]:
    """Messages as comparable data, ignoring generated command ids."""
    out = []
    for m in messages:
        data = msgspec.to_builtins(m)
        if isinstance(m, Command):
            data.pop("command_id", None)
        out.append((type(m).__name__, data))
    return out


class AggregateScenario(Generic[S]):
    """`AggregateScenario(Contract).given(*events).when(command).then(*events)`."""

    def __init__(self, aggregate: Aggregate[S]) -> None:
        self.aggregate = aggregate
        self.history: list[Event] = []
        self.command: Command | None = None

    def given(self, *events: Event) -> AggregateScenario[S]:
        self.history.extend(events)
        return self

    def when(self, command: Command) -> AggregateScenario[S]:
        self.command = command
        return self

    def state(self) -> S:
        return self.aggregate.fold(self.aggregate.initial, self.history)

    def decide(self) -> Sequence[Event]:
        assert self.command is not None, "call when(command) first"
        return self.aggregate.decide(self.state(), self.command)

    def then(self, *expected: Event) -> AggregateScenario[S]:
        got = self.decide()
        assert _plain(got) == _plain(expected), f"expected {list(expected)}, got {list(got)}"
        return self

    def then_rejects(self, error: type[Exception], match: str = "") -> Exception:
        try:
            got = self.decide()
        except error as exc:
            assert match in str(exc), f"{exc!r} does not mention {match!r}"
            return exc
        raise AssertionError(f"expected {error.__name__}, the command decided {list(got)}")


class ProcessScenario:
    """Drive one process manager through the real engine with virtual time.

    `ProcessScenario(process, app=...)`: events given or sent with `when` are appended to the
    log and routed; commands the process sends are recorded, not executed.
    """

    def __init__(self, process: ProcessManager[Any], app: App | None = None) -> None:
        self.app = app or App("process-test")
        if app is None:
            self.app.messages = _LenientRegistry()
            self.app.messages.register_all(*ENGINE_MESSAGES)
        if process.name not in self.app.processes:
            self.app.process(process)
        for event_type in process.interested_in:
            if not self.app.messages.knows(event_type.__name__):
                self.app.register(event_type)
        self.process = process
        self._opened = open_store("sqlite:///:memory:")
        self.clock = VirtualClock()
        self.runtime = Runtime(self.app, self._opened, self.clock, skip=frozenset({"commands"}))
        self.store = self.runtime.store
        self._seen_commands = 0

    def close(self) -> None:
        self._opened.close()

    def __enter__(self) -> ProcessScenario:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _publish(self, events: Sequence[Event]) -> None:
        for event in events:
            self.store.append(f"test-{type(event).__name__}", [event])
        self.runtime.run_until_idle_no_advance()

    def given(self, *events: Event) -> ProcessScenario:
        self._publish(events)
        self._seen_commands = len(self.all_commands())
        return self

    def when(self, *events: Event) -> ProcessScenario:
        self._seen_commands = len(self.all_commands())
        self._publish(events)
        return self

    def advance(self, **delta: float) -> ProcessScenario:
        """Move virtual time forward (`days=3`, `hours=1`), firing timers due on the way."""
        self._seen_commands = len(self.all_commands())
        self.runtime.run_until(self.clock.now() + timedelta(**delta).total_seconds())
        return self

    def all_commands(self) -> list[Message]:
        with self.store.transaction() as tx:
            rows = commands.messages(tx)
        return [self.app.messages.decode(t, v, d) for t, v, d in rows]

    def commands(self) -> list[Message]:
        """Commands sent since the last given / when / advance."""
        return self.all_commands()[self._seen_commands :]

    def then_commands(self, *expected: Command) -> ProcessScenario:
        got = self.commands()
        assert _plain(got) == _plain(expected), f"expected {list(expected)}, got {got}"
        return self

    def timers(self, instance_id: str) -> list[tuple[str, float]]:
        """(name, seconds from now) of the instance's pending timers, soonest first."""
        with self.store.transaction() as tx:
            rows = timers.of_instance(tx, self.process.name, instance_id)
        return [(t.name, t.due_at - self.clock.now()) for t in rows]

    def status(self, instance_id: str) -> str | None:
        """ "active", "done", "new" (a message queued, none handled), or None (never routed)."""
        with self.store.transaction() as tx:
            row = instances.get(tx, self.process.name, instance_id)
        return None if row is None else str(row.status)

    def state(self, instance_id: str) -> Any:
        with self.store.transaction() as tx:
            row = instances.get(tx, self.process.name, instance_id)
        if row is None or row.state is None:
            return None
        return self.runtime.steps.decode_state(self.process, row.state)

    def then_timers(self, instance_id: str, expected: dict[str, timedelta]) -> ProcessScenario:
        """Assert the instance's pending timers exactly, as {name: time from now}
        (`then_timers("c1", {"reminder": timedelta(days=3), "deadline": timedelta(days=14)})`)."""
        got = {name: timedelta(seconds=round(left, 6)) for name, left in self.timers(instance_id)}
        want = {str(name): due for name, due in expected.items()}
        assert got == want, f"expected timers {want}, got {got}"
        return self

    def then_no_timers(self, instance_id: str) -> ProcessScenario:
        return self.then_timers(instance_id, {})

    def then_status(self, instance_id: str, expected: str | None) -> ProcessScenario:
        """Assert the instance's status ("active", "done", ...; None: it does not exist)."""
        got = self.status(instance_id)
        assert got == expected, f"{self.process.name} {instance_id}: expected {expected}, got {got}"
        return self

    def then_state(self, instance_id: str, expected: Any) -> ProcessScenario:
        got = self.state(instance_id)
        assert got == expected, f"{self.process.name} {instance_id}: expected {expected}, got {got}"
        return self
