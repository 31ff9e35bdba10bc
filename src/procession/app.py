"""The application definition: messages, aggregates, handlers, read models, processes.

An `App` is pure wiring, with no store and no threads; `Runtime(app, store, clock)` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from procession.aggregate import Aggregate
from procession.errors import ConfigurationError
from procession.messages import Command, Message, MessageRegistry
from procession.process.effects import ENGINE_MESSAGES
from procession.process.manager import ProcessManager
from procession.projection import Projection
from procession.store.base import Tx

C = TypeVar("C", bound=Command)
Outcome = Literal["done", "failed", "skipped"]


class HandlerContext(Protocol):
    """What a custom command handler may do: load aggregates and run their decisions."""

    def load(self, aggregate: Aggregate[Any], aggregate_id: str) -> tuple[Any, int]: ...
    def exists(self, aggregate: Aggregate[Any], aggregate_id: str) -> bool: ...
    def require(self, aggregate: Aggregate[Any], aggregate_id: str) -> Any: ...
    def execute(self, aggregate: Aggregate[Any], aggregate_id: str, command: Command) -> int: ...


CommandHandler = Callable[[HandlerContext, Any], None]


class TargetSource(Protocol):
    """A page of target ids, ascending, strictly after `after`, that existed at `fence`."""

    def __call__(
        self, tx: Tx, params: dict[str, Any], fence: int, after: str | None, limit: int
    ) -> list[str]: ...


@dataclass(frozen=True)
class SourceDef:
    name: str
    page: TargetSource
    projection: str
    """The projection whose checkpoint must reach the batch's fence before enumeration."""


@dataclass(frozen=True)
class OutcomeRule:
    target: Callable[[Any], str]
    outcome: Outcome


Template = Callable[[str, dict[str, Any]], Command]


class App:
    def __init__(self, name: str) -> None:
        self.name = name
        self.messages = MessageRegistry()
        self.messages.register_all(*ENGINE_MESSAGES)
        self.handlers: dict[type[Command], CommandHandler] = {}
        self.routes: dict[type[Command], tuple[Aggregate[Any], Callable[[Any], str]]] = {}
        """Commands routed to an aggregate by id: the runtime can preload their streams."""
        self.aggregates: dict[str, Aggregate[Any]] = {}
        self.projections: dict[str, Projection] = {}
        self.processes: dict[str, ProcessManager[Any]] = {}
        self.sources: dict[str, SourceDef] = {}
        self.templates: dict[str, Template] = {}
        self.outcomes: dict[type[Message], OutcomeRule] = {}

    def register(self, *classes: type[Message]) -> None:
        self.messages.register_all(*classes)

    def aggregate(self, aggregate: Aggregate[Any]) -> Aggregate[Any]:
        self.aggregates[aggregate.category] = aggregate
        return aggregate

    def command(
        self,
        command_type: type[C],
        aggregate: Aggregate[Any] | None = None,
        to: Callable[[C], str] | None = None,
        handler: Callable[[HandlerContext, C], None] | None = None,
    ) -> None:
        """Route a command to `aggregate` (by the id `to` returns), or to a custom handler."""
        if handler is None:
            if aggregate is None or to is None:
                raise ConfigurationError(f"{command_type.__name__}: give aggregate and to")
            self.aggregate(aggregate)
            target, agg = to, aggregate
            self.routes[command_type] = (aggregate, to)

            def handler(ctx: HandlerContext, command: C) -> None:
                ctx.execute(agg, target(command), command)

        self.messages.register(command_type)
        self.handlers[command_type] = handler

    def projection(self, projection: Projection) -> Projection:
        if not projection.name:
            raise ConfigurationError(f"{type(projection).__name__} has no name")
        self.projections[projection.name] = projection
        return projection

    def process(self, process: ProcessManager[Any]) -> ProcessManager[Any]:
        if not process.name:
            raise ConfigurationError(f"{type(process).__name__} has no name")
        self.processes[process.name] = process
        return process

    def target_source(self, name: str, page: TargetSource, projection: str) -> None:
        self.sources[name] = SourceDef(name, page, projection)

    def batch_template(self, name: str, template: Template) -> None:
        self.templates[name] = template

    def batch_outcome(
        self, event_type: type[Message], target: Callable[[Any], str], outcome: Outcome = "done"
    ) -> None:
        """An event of this type finishes the open batch items of its target."""
        self.outcomes[event_type] = OutcomeRule(target, outcome)

    def check(self) -> None:
        """Fail early on wiring mistakes."""
        for source in self.sources.values():
            if source.projection not in self.projections:
                raise ConfigurationError(
                    f"target source {source.name!r} names unknown projection {source.projection!r}"
                )
