"""The router: reads the log once and turns events into deliveries and batch outcomes.

It is a singleton consumer with a checkpoint committed with the deliveries it wrote, so a
crash re-routes at most the uncommitted page, and nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from procession.app import App
from procession.messages import Message
from procession.process.manager import ProcessManager
from procession.runtime.envelope import load_meta
from procession.runtime.steps import DECODED
from procession.store.base import Tx, encode_json
from procession.store.records import RawEvent
from procession.store.work import ItemStatus, batches, instances

CHECKPOINT = "router"


class Router:
    def __init__(self, app: App) -> None:
        self.app = app
        self.hand_off = False
        """Keep deliveries in `handed` (instances created, nothing queued) for the steps
        to take in the same transaction; what they cannot take, they queue."""
        self.handed: list[dict[str, Any]] = []
        self.by_type: dict[type[Message], list[ProcessManager[Any]]] = defaultdict(list)
        for process in app.processes.values():  # a declared base class routes its subclasses
            for cls in app.messages.classes():
                if any(issubclass(cls, declared) for declared in process.interested_in):
                    self.by_type[cls].append(process)
        wanted = set(self.by_type) | set(app.outcomes)
        self.names = {app.messages.type_of_class(t).name for t in wanted}

    def apply(self, tx: Tx, rows: list[RawEvent], now: float) -> None:
        """Route a page of the log (the caller moves the checkpoint in the same transaction)."""
        deliveries: list[dict[str, Any]] = []
        for row in rows:
            if row[3] in self.names:
                self.route(tx, row, deliveries, now)
        if self.hand_off:  # the steps create the instances that do not exist yet
            self.handed.extend(deliveries)
        else:
            instances.deliver(tx, deliveries, now)

    def take(self) -> list[dict[str, Any]]:
        """The deliveries handed off since the last take, in routing order."""
        handed, self.handed = self.handed, []
        return handed

    def route(self, tx: Tx, row: RawEvent, out: list[dict[str, Any]], now: float) -> None:
        position, stream_id, _version, type_, schema_version, data, meta_text = row
        event = tx.registry.decode(type_, schema_version, data)
        rule = self.app.outcomes.get(type(event))
        if rule is not None:
            outcome: ItemStatus = rule.outcome  # type: ignore[assignment]  # a member's value
            batches.finish_awaiting(tx, rule.target(event), outcome, type_, now, position)
        processes = self.by_type.get(type(event))
        if not processes:
            return
        meta = load_meta(meta_text)
        meta["position"], meta["stream_id"] = position, stream_id
        meta_json = encode_json(meta)
        for process in processes:
            route = process.interested(event)
            if route is None:
                continue
            for instance_id in route.ids:
                delivery = {
                    "process": process.name,
                    "instance_id": instance_id,
                    "routing": route.kind,  # a Routing value (a str, as stored)
                    "type": type_,
                    "schema_version": schema_version,
                    "data": data,
                    "metadata": meta_json,
                }
                if self.hand_off:  # the steps need not decode them again
                    delivery[DECODED] = (event, meta)
                out.append(delivery)
