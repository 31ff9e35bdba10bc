"""The application definition: messages, aggregates, handlers, read models, processes.

An `App` is pure wiring, with no store and no threads; `Runtime(app, store, clock)` runs it.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from types import UnionType
from typing import Any, Literal, Protocol, TypeVar

from procession.aggregate import Aggregate
from procession.errors import ConfigurationError
from procession.messages import Command, Event, Message, MessageRegistry
from procession.policy import DEFAULT_POLICY, OnError, RetryPolicy
from procession.process.batch import BatchTemplate, TargetSource
from procession.process.effects import ENGINE_MESSAGES
from procession.process.manager import ProcessManager
from procession.projection import Projection

C = TypeVar("C", bound=Command)
Outcome = Literal["done", "failed", "skipped"]


class HandlerContext(Protocol):
    """What a custom command handler may do: load aggregates and run their decisions."""

    def load(self, aggregate: Aggregate[Any], aggregate_id: str) -> tuple[Any, int]: ...
    def exists(self, aggregate: Aggregate[Any], aggregate_id: str) -> bool: ...
    def require(self, aggregate: Aggregate[Any], aggregate_id: str) -> Any: ...
    def execute(self, aggregate: Aggregate[Any], aggregate_id: str, command: Command) -> int: ...


CommandHandler = Callable[[HandlerContext, Any], None]


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


@dataclass(frozen=True)
class TemplateDef:
    name: str
    build: BatchTemplate
    awaits_outcome: bool
    """Items of its batches finish on an outcome event (`App.batch_outcome`)."""


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
        self.templates: dict[str, TemplateDef] = {}
        self.outcomes: dict[type[Message], OutcomeRule] = {}
        self.command_policies: dict[type[Command], OnError] = {}

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
        retry: RetryPolicy = DEFAULT_POLICY,
        on_error: OnError | None = None,
    ) -> None:
        """Route a command to `aggregate` (by the id `to` returns), or to a custom handler.

        When it fails in the outbox (an error, not a `CommandRejected`), `on_error` decides
        (by default `retry`: backoff, then park)."""
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
        self.command_policies[command_type] = on_error or retry.decide

    def command_policy(self, command_type: type[Command]) -> OnError:
        return self.command_policies.get(command_type, DEFAULT_POLICY.decide)

    def projection(self, projection: Projection) -> Projection:
        if not projection.name:
            raise ConfigurationError(f"{type(projection).__name__} has no name")
        self.projections[projection.name] = projection
        return projection

    def process(self, process: ProcessManager[Any]) -> ProcessManager[Any]:
        """Register a process manager. An empty `interested_in` is derived from the type of
        `interested`'s event parameter (`event: A | B`)."""
        if not process.name:
            raise ConfigurationError(f"{type(process).__name__} has no name")
        _refuse_first_edition_policy(process)
        if not process.interested_in:
            process.interested_in = routed_types(process)
        self.processes[process.name] = process
        return process

    def target_source(self, name: str, page: TargetSource, projection: str) -> None:
        self.sources[name] = SourceDef(name, page, projection)

    def batch_template(
        self, name: str, template: BatchTemplate, awaits_outcome: bool = True
    ) -> None:
        """A command template for batches; `awaits_outcome`: its items finish on an outcome
        event (declare one with `batch_outcome`), not when their command has run."""
        self.templates[name] = TemplateDef(name, template, awaits_outcome)

    def batch_outcome(
        self, event_type: type[Message], target: Callable[[Any], str], outcome: Outcome = "done"
    ) -> None:
        """An event of this type finishes the open batch items of its target."""
        self.outcomes[event_type] = OutcomeRule(target, outcome)

    def check(self) -> None:
        """Refuse, before anything runs, every wiring mistake that can be known now."""
        problems = [
            *self._source_problems(),
            *self._template_problems(),
            *(p for process in self.processes.values() for p in self._process_problems(process)),
        ]
        if problems:
            raise ConfigurationError("; ".join(problems))

    def _source_problems(self) -> list[str]:
        return [
            f"target source {source.name!r} names unknown projection {source.projection!r}"
            for source in self.sources.values()
            if source.projection not in self.projections
        ]

    def _template_problems(self) -> list[str]:
        if self.outcomes:
            return []
        return [
            f"batch template {t.name!r} awaits outcomes, but no App.batch_outcome is declared:"
            " its batches could never complete (declare one, or awaits_outcome=False)"
            for t in self.templates.values()
            if t.awaits_outcome
        ]

    def _process_problems(self, process: ProcessManager[Any]) -> list[str]:
        name = process.name
        problems = [
            f"process {name!r} starts batches from unknown target source {source!r}"
            for source, _ in process.starts_batches
            if source not in self.sources
        ] + [
            f"process {name!r} starts batches of unknown template {template!r}"
            for _, template in process.starts_batches
            if template not in self.templates
        ]
        missing = [  # covered by a declared subclass (routed) or a declared base class
            t.__name__
            for t in routed_types(process)
            if not any(
                issubclass(declared, t) or issubclass(t, declared)
                for declared in process.interested_in
            )
        ]
        if missing:
            problems.append(
                f"process {name!r}: interested() takes {', '.join(missing)}, which "
                "interested_in omits (they would never be routed to it)"
            )
        unknown = [
            t.__name__
            for t in process.interested_in
            if not any(issubclass(c, t) for c in self.messages.classes())
        ]
        if unknown:
            problems.append(f"process {name!r} is interested in unregistered {', '.join(unknown)}")
        if not process.interested_in and type(process).interested is not ProcessManager.interested:
            problems.append(
                f"process {name!r} routes no event type: declare interested_in, or annotate "
                "interested(self, event: A | B)"
            )
        return problems


def _refuse_first_edition_policy(process: ProcessManager[Any]) -> None:
    """Settings of the first edition's failure policy would be ignored silently: refuse them."""
    name = type(process).__name__
    if hasattr(process, "max_attempts"):
        raise ConfigurationError(
            f"{name}.max_attempts is no longer read: set "
            "retry_policy = RetryPolicy(max_attempts=...) instead"
        )
    parameters = inspect.signature(process.on_error).parameters
    if len(parameters) != 1:
        raise ConfigurationError(
            f"{name}.on_error takes one Failure (failure.error, .attempt, .message, ...), "
            f"not ({', '.join(parameters)})"
        )


def routed_types(process: ProcessManager[Any]) -> tuple[type[Message], ...]:
    """The concrete message types `interested`'s event parameter is annotated with."""
    try:
        hints = typing.get_type_hints(process.interested)
    except Exception:  # an annotation that does not resolve: nothing to learn from it
        return ()
    hint = next((v for k, v in hints.items() if k != "return"), None)
    if hint is None:
        return ()
    options = (
        typing.get_args(hint)
        if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union
        else (hint,)
    )
    return tuple(
        t
        for t in options
        if isinstance(t, type) and issubclass(t, Message) and t not in (Message, Event, Command)
    )
