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
from procession.policy import Failure, Park, Retry, consult, describe
from procession.process.effects import (
    CancelBatch,
    CancelTimer,
    Complete,
    Schedule,
    StartBatch,
    TimerFired,
)
from procession.process.manager import ProcessManager, StepContext
from procession.runtime import batches
from procession.runtime.commands import CommandBus, SentCommand
from procession.runtime.envelope import load_meta, message_row, message_time, metadata
from procession.store.base import Tx, encode_json
from procession.store.work import (
    ClaimedInstance,
    CommandStatus,
    Delivery,
    InstanceStatus,
    Routing,
    commands,
    instances,
    timers,
)

DECODED = "decoded"
"""The key of a handed-off delivery's (message, metadata), decoded by the router already."""
Decoded = tuple[Message, dict[str, Any]]
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
    new: bool = False
    """No row yet: the first save creates it."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.process.name, self.instance_id)

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
    def __init__(self, app: App, inline: CommandBus | None = None) -> None:
        """With `inline`, the commands a step sends run in the step's own transaction
        (`CommandBus.run_sent`) instead of waiting in the outbox for the commands stage."""
        self.app = app
        self.inline = inline
        self.sent: list[SentCommand] = []
        self.record: list[tuple[str, float]] | None = None
        """When a list (metrics on): each step run appends its process and the seconds from
        its message's time to the step, on the runtime's clock."""

    def run(self, tx: Tx, now: float, limit: int = 200) -> int:
        self.sent = []
        steps = self._run(tx, now, limit)
        self.run_sent(tx, now)
        return steps

    def run_sent(self, tx: Tx, now: float) -> None:
        """Execute the commands this stage's steps sent inline, in its transaction."""
        if self.sent and self.inline is not None:
            sent, self.sent = self.sent, []
            self.inline.run_sent(tx, now, sent)

    def _run(self, tx: Tx, now: float, limit: int) -> int:
        claimed = instances.claim(tx, now, limit)
        inboxes = instances.deliveries_of(tx, [(c.process, c.instance_id) for c in claimed])
        steps = 0
        for row in claimed:
            process = self.app.processes.get(row.process)
            if process is None:
                continue  # a process this app does not run (another app shares the store)
            deliveries = inboxes.get((row.process, row.instance_id), [])
            steps += self.run_claimed(tx, process, row, deliveries, now)
        return steps

    def run_claimed(
        self,
        tx: Tx,
        process: ProcessManager[Any],
        row: ClaimedInstance,
        deliveries: list[Delivery],
        now: float,
        decoded: list[Decoded | None] | None = None,
        new: bool = False,
    ) -> int:
        """`new`: the instance has no row yet; its first save creates it."""
        inst = Instance(
            process, row.instance_id, row.status, None, row.version, row.last_position, []
        )
        inst.new = inst.changed = new
        inst.wait_until = inst.was_waiting = float(row.wait_until)
        try:
            self.load_state(inst, row)
        except Exception as exc:  # e.g. a state shape changed without a migration
            if not deliveries:
                return 0
            # park it with the error; its stored state stays as it is
            self.park_unreadable(tx, inst, deliveries, exc, now)
            return 1
        steps = self.run_instance(tx, inst, deliveries, now, decoded)
        if inst.changed:
            self.save(tx, inst, now)
        return steps

    def run_handed(self, tx: Tx, now: float, handed: list[dict[str, Any]]) -> int:
        """Run the deliveries the router handed off in this transaction (the log stage's):
        each instance that is free (not blocked, nothing of its own queued; on PostgreSQL
        not claimed by another worker) takes its deliveries at once, with no inbox row
        written or deleted for them; the others' are queued as the router would have.
        A step that fails queues its delivery with the failure, and those behind it."""
        self.sent = []
        by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in handed:
            by_key.setdefault((row["process"], row["instance_id"]), []).append(row)
        by_process: dict[str, list[str]] = {}
        for process_name, instance_id in by_key:
            by_process.setdefault(process_name, []).append(instance_id)
        steps = 0

        def take(process: ProcessManager[Any], row: ClaimedInstance, new: bool = False) -> int:
            rows = by_key.pop((row.process, row.instance_id))
            deliveries = [_in_memory(r, now) for r in rows]
            decoded = [r.get(DECODED) for r in rows]
            return self.run_claimed(tx, process, row, deliveries, now, decoded, new=new)

        for process_name, ids in by_process.items():
            process = self.app.processes.get(process_name)
            if process is None:
                continue  # a timer of a process another app runs: queued for that app
            for claimed in instances.claim_handoff(tx, process_name, ids):
                steps += take(process, claimed)
            left = [i for i in ids if (process_name, i) in by_key]
            found = instances.existing(tx, process_name, left) if left else set()
            for instance_id in left:
                if instance_id not in found:  # a new instance: made here, written once
                    made = ClaimedInstance(
                        process_name, instance_id, InstanceStatus.NEW, None, 0, 0, None, None, 0.0
                    )
                    steps += take(process, made, new=True)
                # else it exists and is not free: queued below
        # the others are queued, in the order they were handed (the inbox's order)
        queued = [
            {k: v for k, v in r.items() if k != DECODED}
            for r in handed
            if (r["process"], r["instance_id"]) in by_key
        ]
        instances.redeliver(tx, queued, now)
        self.run_sent(tx, now)
        return steps

    def load_state(self, inst: Instance, row: ClaimedInstance) -> None:
        inst.state = None if row.state is None else self.decode_state(inst.process, row.state)
        inst.seen = [] if not row.seen else msgspec.json.decode(row.seen)
        inst.timers = {} if not row.timers else msgspec.json.decode(row.timers)

    def park_unreadable(
        self, tx: Tx, inst: Instance, deliveries: list[Delivery], exc: Exception, now: float
    ) -> None:
        error = f"cannot load the state of {inst.process.name} {inst.instance_id}: {describe(exc)}"
        self.delivery_failed(tx, deliveries, 0, error, parked=True, retry_at=now, now=now)
        instances.park(tx, inst.key, now)

    def delivery_failed(
        self,
        tx: Tx,
        deliveries: list[Delivery],
        index: int,
        error: str,
        *,
        parked: bool,
        retry_at: float,
        now: float,
    ) -> None:
        """Record the failure of `deliveries[index]`. A handed-off one (never queued) is
        queued now with its failure, and the handed-off ones behind it after it."""
        delivery = deliveries[index]
        if delivery.id:
            instances.failed(tx, delivery.id, error, parked=parked, retry_at=retry_at, now=now)
            return
        row = _queued_row(delivery)
        instances.queue_failed(tx, row, error, parked=parked, retry_at=retry_at, now=now)
        self.queue_rest(tx, deliveries, index + 1, now)

    def queue_rest(self, tx: Tx, deliveries: list[Delivery], start: int, now: float) -> None:
        """Queue the handed-off deliveries from `start` on (a step before them stopped)."""
        rest = [_queued_row(d) for d in deliveries[start:] if not d.id]
        instances.redeliver(tx, rest, now)

    def save(self, tx: Tx, inst: Instance, now: float) -> None:
        if inst.parked or inst.wait_until:
            instances.block(tx, inst.key, parked=inst.parked, until=inst.wait_until)
        elif inst.was_waiting:
            instances.unblock(tx, inst.key)
        (instances.create if inst.new else instances.save)(
            tx,
            {
                "process": inst.process.name,
                "instance_id": inst.instance_id,
                "now": now,
                "status": inst.status,
                "parked": int(inst.parked),
                "state": None if inst.state is None else encode_json(inst.state),
                "version": inst.version,
                "last_position": inst.last_position,
                "seen": encode_json(inst.seen) if inst.seen else None,
                "timers": encode_json(inst.timers) if inst.timers else None,
                "wait_until": inst.wait_until,
            },
        )

    def decode_state(self, process: ProcessManager[Any], text: str) -> Any:
        if process.state_type is None:
            return msgspec.json.decode(text)
        return msgspec.json.decode(text, type=process.state_type)

    def run_instance(
        self,
        tx: Tx,
        inst: Instance,
        deliveries: list[Delivery],
        now: float,
        decoded: list[Decoded | None] | None = None,
    ) -> int:
        """Deliveries in order; a delivery with id 0 was handed off by the router (it has
        no inbox row: nothing to delete, and a failure queues it). `decoded` holds, where
        the router had them, each delivery's message and metadata already decoded."""
        steps = 0
        for index, delivery in enumerate(deliveries):
            if delivery.parked or delivery.available_at > now:
                break  # order: nothing after a waiting message runs before it
            known = decoded[index] if decoded else None
            meta = load_meta(delivery.metadata) if known is None else dict(known[1])
            message: Message | None = None
            steps += 1  # a step, a dropped duplicate or a failure: each is work done
            if inst.already_handled(meta) or inst.timer_is_stale(meta):
                if delivery.id:
                    instances.consumed(tx, delivery.id)
                inst.changed = True
                continue
            before, sent = inst.fields(), len(self.sent)
            try:
                with tx.savepoint():
                    message = (
                        tx.registry.decode(delivery.type, delivery.schema_version, delivery.data)
                        if known is None
                        else known[0]
                    )
                    if "timer" in meta:
                        del inst.timers[meta["timer"]]  # it fired: it is no longer set
                    self.step(tx, inst, delivery.routing, message, meta, now)
                    if delivery.id:
                        instances.consumed(tx, delivery.id)
                    inst.mark_handled(meta)
                    inst.wait_until, inst.changed = 0.0, True
            except Exception as exc:
                inst.restore(before)
                del self.sent[sent:]
                self.failed(tx, inst, deliveries, index, message, meta, exc, now)
                break
        return steps

    def failed(
        self,
        tx: Tx,
        inst: Instance,
        deliveries: list[Delivery],
        index: int,
        message: Message | None,
        meta: dict[str, Any],
        exc: Exception,
        now: float,
    ) -> None:
        """Ask the process's `on_error` what to do, with the failure's whole context."""
        delivery = deliveries[index]
        failure = Failure(
            error=exc,
            attempt=delivery.attempts + 1,
            first_failed_at=delivery.first_failed_at or now,
            last_error=delivery.error,
            message=message,
            subject=f"process:{inst.process.name}/{inst.instance_id}",
        )
        decision, error = consult(None if message is None else inst.process.on_error, failure)
        if isinstance(decision, Retry):
            retry_at = now + decision.delay.total_seconds()
            self.delivery_failed(
                tx, deliveries, index, error, parked=False, retry_at=retry_at, now=now
            )
            inst.wait_until, inst.changed = retry_at, True
        elif isinstance(decision, Park):
            self.delivery_failed(tx, deliveries, index, error, parked=True, retry_at=now, now=now)
            inst.parked, inst.changed = True, True
        else:  # dropped for good: counted as handled, so a redelivery of it is dropped too
            if delivery.id:
                instances.consumed(tx, delivery.id)
            else:  # the handed-off ones behind it wait in the inbox for the next round
                self.queue_rest(tx, deliveries, index + 1, now)
            if "timer" in meta and not inst.timer_is_stale(meta):
                del inst.timers[meta["timer"]]  # it fired: it is no longer set
            inst.mark_handled(meta)
            inst.wait_until, inst.changed = 0.0, True

    def step(
        self,
        tx: Tx,
        inst: Instance,
        routing: str,
        message: Message,
        meta: dict[str, Any],
        now: float,
    ) -> None:
        """`routing` is a `Routing` value as stored (compared as a str: no enum is built per
        delivery on this hot path)."""
        process = inst.process
        running = inst.status == InstanceStatus.ACTIVE
        if routing in (Routing.START, Routing.START_STRICT):
            if running and routing == Routing.START_STRICT:
                raise ProcessError(f"{process.name} {inst.instance_id} is already running")
            if not running:
                inst.state, inst.version = process.initial(), 0
                inst.status = InstanceStatus.ACTIVE
        elif not running:
            if routing == Routing.CONTINUE_STRICT:
                raise ProcessError(f"{process.name} {inst.instance_id} is not running")
            return  # nothing to continue: a late message for a finished instance
        position = meta.get("position")
        occurred = message_time(meta)
        ctx = StepContext(
            process.name,
            inst.instance_id,
            occurred,
            meta["message_id"],
            meta.get("correlation_id") or meta["message_id"],
            meta,
            None if position is None else int(position),
        )
        effects = process.handle(inst.state, message, ctx)
        inst.state = process.evolve(inst.state, message)
        inst.version += 1
        inst.changed = True
        for index, effect in enumerate(effects):
            self.apply(tx, inst, effect, index, ctx, now)
        if routing == Routing.STOP:
            self.complete(tx, inst)
        if self.record is not None:  # a step that raised is not one
            self.record.append((process.name, now - occurred))

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
            if self.inline is not None and self.inline.takes_inline(effect):
                self.sent.append((command, meta))
                return
            commands.record(
                tx, command_id, CommandStatus.PENDING, now, message_row(tx.registry, command, meta)
            )
        elif isinstance(effect, Schedule):
            self.schedule(tx, inst, effect, ctx)
        elif isinstance(effect, CancelTimer):
            if inst.timers.pop(effect.name, None) is not None:  # else no row is set to delete
                timers.cancel(tx, name, inst.instance_id, effect.name)
        elif isinstance(effect, StartBatch):
            spec = batches.check_start(self.app, effect)
            meta = {"message_id": ctx.message_id, "correlation_id": ctx.correlation_id}
            batches.start(tx, name, inst.instance_id, spec, meta, now)
        elif isinstance(effect, CancelBatch):
            batches.cancel(tx, effect.batch_id, now)
        elif isinstance(effect, Complete):
            self.complete(tx, inst)
        else:
            raise ProcessError(f"{name}: unknown effect {effect!r}")

    def schedule(self, tx: Tx, inst: Instance, effect: Schedule, ctx: StepContext) -> None:
        if effect.at is not None:
            due = effect.at
        else:
            due = ctx.now + (effect.after or timedelta()).total_seconds()
        name = str(effect.name)
        message = effect.message or TimerFired(name=name)
        timer_id = derived_id("timer", inst.process.name, inst.instance_id, name, ctx.message_id)
        meta = metadata(timer_id, ctx.correlation_id, ctx.message_id, due, timer=name)
        inst.timers[name] = timer_id
        timers.set_timer(
            tx,
            inst.process.name,
            inst.instance_id,
            name,
            due,
            message_row(tx.registry, message, meta),
        )

    def complete(self, tx: Tx, inst: Instance) -> None:
        inst.status, inst.changed = InstanceStatus.DONE, True
        if inst.timers:  # `timers` names every timer row of the instance: none, no delete
            inst.timers.clear()
            timers.cancel_all(tx, inst.process.name, inst.instance_id)


def _in_memory(row: dict[str, Any], now: float) -> Delivery:
    """A delivery the router handed off: as if queued and claimed, with no row (id 0)."""
    return Delivery(
        row["process"],
        row["instance_id"],
        0,
        row["routing"],
        row["type"],
        row["schema_version"],
        row["data"],
        row["metadata"],
        0,
        now,
        0,
        None,
        None,
    )


def _queued_row(delivery: Delivery) -> dict[str, Any]:
    return {
        "process": delivery.process,
        "instance_id": delivery.instance_id,
        "routing": delivery.routing,
        "type": delivery.type,
        "schema_version": delivery.schema_version,
        "data": delivery.data,
        "metadata": delivery.metadata,
    }
