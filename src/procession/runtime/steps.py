"""Running process steps: per instance strictly in order, each step one savepoint.

A claimed instance's deliveries are handled oldest first. A step's new state, its outbox
commands, timers, batch records and the deletion of its delivery all commit together, so
a redelivered message after a crash finds either everything done or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec

from procession.app import App
from procession.errors import ProcessError
from procession.ids import derived_id
from procession.messages import Command, Message
from procession.process import batch
from procession.process.effects import (
    CancelBatch,
    CancelTimer,
    Complete,
    Schedule,
    StartBatch,
    TimerFired,
)
from procession.process.manager import Park, ProcessManager, Retry, StepContext
from procession.runtime.commands import enqueue
from procession.runtime.envelope import load_meta, message_row, message_time, metadata
from procession.store.base import Tx, encode_json

RUNNING = "active"
SEEN_KEPT = 32
"""Ids of recent non-event messages (timers, batch completions) kept for deduplication."""


@dataclass
class Instance:
    process: ProcessManager[Any]
    instance_id: str
    status: str
    state: Any
    version: int
    last_position: int
    seen: list[str]
    timers: dict[str, str] = field(default_factory=dict)
    """The id of each timer set and not yet fired or cancelled, by name."""
    wait_until: float = 0.0
    """A failed step is retried then: nothing of this instance runs before it."""
    was_waiting: float = 0.0
    changed: bool = False
    parked: bool = False

    def fields(self) -> tuple[Any, ...]:
        return (
            self.status,
            self.state,
            self.version,
            self.last_position,
            list(self.seen),
            dict(self.timers),
            self.wait_until,
            self.changed,
            self.parked,
        )

    def restore(self, saved: tuple[Any, ...]) -> None:
        (
            self.status,
            self.state,
            self.version,
            self.last_position,
            self.seen,
            self.timers,
            self.wait_until,
            self.changed,
            self.parked,
        ) = saved

    def timer_is_stale(self, meta: dict[str, Any]) -> bool:
        """A fired timer that was cancelled or set again after it fired: it must not act."""
        name = meta.get("timer")
        return name is not None and self.timers.get(name) != meta["message_id"]

    def already_handled(self, meta: dict[str, Any]) -> bool:
        """A redelivery: an event at or below the high-water position, or a message id seen."""
        position = meta.get("position")
        if position is not None:
            return int(position) <= self.last_position
        return meta["message_id"] in self.seen

    def mark_handled(self, meta: dict[str, Any]) -> None:
        position = meta.get("position")
        if position is not None:
            self.last_position = max(self.last_position, int(position))
        else:
            self.seen = [*self.seen[-(SEEN_KEPT - 1) :], meta["message_id"]]


class StepRunner:
    def __init__(self, app: App) -> None:
        self.app = app

    def run(self, tx: Tx, now: float, limit: int = 200) -> int:
        tx.run("claim_plan")
        claimed = tx.rows("claim_instances", now=now, limit=limit, scan=limit * 8)
        inboxes = self.inboxes(tx, [(r[0], r[1]) for r in claimed])
        steps = 0
        for name, instance_id, status, state_text, version, position, seen, timers, wait in claimed:
            process = self.app.processes.get(name)
            if process is None:
                continue  # a process this app does not run (another app shares the store)
            rows = inboxes.get((name, instance_id), [])
            inst = Instance(process, instance_id, status, None, version, position, [])
            inst.wait_until = inst.was_waiting = float(wait)
            try:
                inst.state = None if state_text is None else self.decode_state(process, state_text)
                inst.seen = [] if not seen else msgspec.json.decode(seen)
                inst.timers = {} if not timers else msgspec.json.decode(timers)
            except Exception as exc:  # e.g. a state shape changed without a migration
                if rows:  # park it with the error; its stored state stays as it is
                    self.failed(tx, inst, rows[0][0], None, exc, rows[0][6] + 1, now)
                    tx.defer_any("park_instance", process=name, instance_id=instance_id, now=now)
                    tx.defer_any(
                        "block_instance", process=name, instance_id=instance_id, parked=1, until=0.0
                    )
                    steps += 1
                continue
            steps += self.run_instance(tx, inst, rows, now)
            if inst.changed:
                self.save(tx, inst, now)
        return steps

    def save(self, tx: Tx, inst: Instance, now: float) -> None:
        key = {"process": inst.process.name, "instance_id": inst.instance_id}
        if inst.parked or inst.wait_until:
            tx.defer_any("block_instance", **key, parked=int(inst.parked), until=inst.wait_until)
        elif inst.was_waiting:
            tx.defer_any("unblock_instance", **key)
        tx.defer_any(
            "save_instance",
            process=inst.process.name,
            instance_id=inst.instance_id,
            status=inst.status,
            parked=int(inst.parked),
            state=None if inst.state is None else encode_json(inst.state),
            version=inst.version,
            last_position=inst.last_position,
            seen=encode_json(inst.seen) if inst.seen else None,
            timers=encode_json(inst.timers) if inst.timers else None,
            wait_until=inst.wait_until,
            now=now,
        )

    def decode_state(self, process: ProcessManager[Any], text: str) -> Any:
        if process.state_type is None:
            return msgspec.json.decode(text)
        return msgspec.json.decode(text, type=process.state_type)

    def inboxes(
        self, tx: Tx, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
        """Every delivery of the claimed instances, oldest first, in one query."""
        found: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        if not keys:
            return found
        wanted = set(keys)
        ids = tx.store.backend.array_param(sorted({k[1] for k in keys}))
        for row in tx.rows("inbox_of_instances", ids=ids):
            key = (row[0], row[1])
            if key in wanted:
                found.setdefault(key, []).append(row[2:])
        return found

    def run_instance(self, tx: Tx, inst: Instance, rows: list[tuple[Any, ...]], now: float) -> int:
        steps = 0
        for (
            inbox_id,
            routing,
            type_,
            schema_version,
            data,
            meta_text,
            attempts,
            avail,
            parked,
        ) in rows:
            if parked or avail > now:
                break  # order: nothing after a waiting message runs before it
            meta = load_meta(meta_text)
            message: Message | None = None
            steps += 1  # a step, a dropped duplicate or a failure: each is work done
            if inst.already_handled(meta) or inst.timer_is_stale(meta):
                tx.defer_any("delete_inbox", id=inbox_id)
                inst.changed = True
                continue
            before = inst.fields()
            try:
                with tx.savepoint():
                    message = tx.store.registry.decode(type_, schema_version, data)
                    if "timer" in meta:
                        del inst.timers[meta["timer"]]  # it fired: it is no longer set
                    self.step(tx, inst, routing, message, meta, now)
                    tx.defer_any("delete_inbox", id=inbox_id)
                    inst.mark_handled(meta)
                    inst.wait_until, inst.changed = 0.0, True
            except Exception as exc:
                inst.restore(before)
                self.failed(tx, inst, inbox_id, message, exc, attempts + 1, now)
                break
        return steps

    def failed(
        self,
        tx: Tx,
        inst: Instance,
        inbox_id: int,
        message: Message | None,
        exc: Exception,
        attempts: int,
        now: float,
    ) -> None:
        policy = inst.process.on_error(exc, message, attempts) if message is not None else Park()
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(policy, Retry):
            retry_at = now + policy.delay.total_seconds()
            tx.defer_any("fail_inbox", id=inbox_id, error=error, parked=0, available_at=retry_at)
            inst.wait_until, inst.changed = retry_at, True
        elif isinstance(policy, Park):
            tx.defer_any("fail_inbox", id=inbox_id, error=error, parked=1, available_at=now)
            inst.parked, inst.changed = True, True
        else:
            tx.defer_any("delete_inbox", id=inbox_id)

    def step(
        self,
        tx: Tx,
        inst: Instance,
        routing: str,
        message: Message,
        meta: dict[str, Any],
        now: float,
    ) -> None:
        process = inst.process
        running = inst.status == RUNNING
        if routing.startswith("start"):
            if running and routing == "start!":
                raise ProcessError(f"{process.name} {inst.instance_id} is already running")
            if not running:
                inst.state, inst.version, inst.status = process.initial(), 0, RUNNING
        elif not running:
            if routing == "continue!":
                raise ProcessError(f"{process.name} {inst.instance_id} is not running")
            return  # nothing to continue: a late message for a finished instance
        ctx = StepContext(
            process.name,
            inst.instance_id,
            message_time(meta),
            meta["message_id"],
            meta.get("correlation_id") or meta["message_id"],
            meta,
        )
        effects = process.handle(inst.state, message, ctx)
        inst.state = process.evolve(inst.state, message)
        inst.version += 1
        inst.changed = True
        for index, effect in enumerate(effects):
            self.apply(tx, inst, effect, index, ctx, now)
        if routing == "stop":
            self.complete(tx, inst)

    def apply(
        self, tx: Tx, inst: Instance, effect: object, index: int, ctx: StepContext, now: float
    ) -> None:
        name = inst.process.name
        if isinstance(effect, Command):
            command_id = effect.command_id or derived_id(
                name, inst.instance_id, ctx.message_id, index
            )
            command = msgspec.structs.replace(effect, command_id=command_id)
            meta = metadata(
                command_id,
                ctx.correlation_id,
                ctx.message_id,
                ctx.now,
                process=name,
                instance_id=inst.instance_id,
            )
            enqueue(tx, command, meta, now)
        elif isinstance(effect, Schedule):
            self.schedule(tx, inst, effect, ctx)
        elif isinstance(effect, CancelTimer):
            inst.timers.pop(effect.name, None)
            tx.defer("cancel_timer", process=name, instance_id=inst.instance_id, name=effect.name)
        elif isinstance(effect, StartBatch):
            meta = {"message_id": ctx.message_id, "correlation_id": ctx.correlation_id}
            batch.start(tx, name, inst.instance_id, effect, meta, now)
        elif isinstance(effect, CancelBatch):
            batch.cancel(tx, effect.batch_id, now)
        elif isinstance(effect, Complete):
            self.complete(tx, inst)
        else:
            raise ProcessError(f"{name}: unknown effect {effect!r}")

    def schedule(self, tx: Tx, inst: Instance, effect: Schedule, ctx: StepContext) -> None:
        if effect.at is not None:
            due = effect.at
        else:
            due = ctx.now + (effect.after or timedelta()).total_seconds()
        message = effect.message or TimerFired(name=effect.name)
        timer_id = derived_id(
            "timer", inst.process.name, inst.instance_id, effect.name, ctx.message_id
        )
        meta = metadata(timer_id, ctx.correlation_id, ctx.message_id, due, timer=effect.name)
        inst.timers[effect.name] = timer_id
        tx.defer(
            "set_timer",
            process=inst.process.name,
            instance_id=inst.instance_id,
            name=effect.name,
            due_at=due,
            **message_row(tx.store.registry, message, meta),
        )

    def complete(self, tx: Tx, inst: Instance) -> None:
        inst.status, inst.changed = "done", True
        inst.timers.clear()
        tx.defer("cancel_all_timers", process=inst.process.name, instance_id=inst.instance_id)
