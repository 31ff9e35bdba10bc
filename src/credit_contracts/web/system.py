"""What the HTTP layer needs from the running system: commands, runs, and batch listings.

One `WebSystem` per server. Commands go through `Runtime.send` (one transaction each; a
rejected command stores nothing), then wait until the read models have caught up with the
position the command reached, so the answer and every later read show its effect. Runs are
serialised by one lock: the runtime's loops are not meant to race each other inside one
process (worker processes on PostgreSQL are the way to scale out).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from credit_contracts.web.idempotency import Requests
from credit_contracts.web.security import Security
from procession import BatchProgress, Command, CommandResult, Runtime, derived_id

DAY = 24 * 3600.0
log = logging.getLogger(__name__)

ClockKind = Literal["system", "virtual"]


class ClockError(Exception):
    """A run asked to move a clock that cannot be moved."""


@dataclass
class WebSystem:
    runtime: Runtime
    clock: ClockKind
    security: Security = field(default_factory=Security)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: Requests = field(init=False)

    def __post_init__(self) -> None:
        self.requests = Requests(self.runtime.store)

    # -- commands --------------------------------------------------------------------------------

    def execute(self, command: Command, idempotency_key: str | None = None) -> CommandResult:
        """Execute now and wait for the read models; the same key twice executes once (the
        key, not the command's type: `Requests` refuses a key reused for another request)."""
        if idempotency_key:
            key = derived_id("http", idempotency_key)
            command = msgspec.structs.replace(command, command_id=key)
        result = self.runtime.send(command)
        if result.position:
            self.runtime.wait_for(result.position)
        return result

    # -- running ---------------------------------------------------------------------------------

    def run(self, advance_days: float | None = None) -> dict[str, Any]:
        """Process until idle; a virtual clock jumps to due timers (at most `advance_days`)."""
        if advance_days is not None and self.clock != "virtual":
            raise ClockError(
                "advance_days needs a virtual clock: this server runs on the system clock"
            )
        with self.lock:
            if advance_days is None:
                stats = self.runtime.run_until_idle()
                work, advances = stats.work, stats.clock_advances
            else:
                work, advances = self.run_for(advance_days * DAY)
        return {"work": work, "clock_advances": advances, **self.clock_state()}

    def run_for(self, seconds: float) -> tuple[int, int]:
        """Do what falls due between now and now + `seconds`, then leave the clock there."""
        stats = self.runtime.run_until(self.runtime.clock.now() + seconds)
        return stats.work, stats.clock_advances

    def work_forever(self, stop: threading.Event, idle_sleep: float = 0.2) -> None:
        """A background worker (`--worker`): small rounds under the run lock until stopped."""
        while not stop.is_set():
            try:
                with self.lock:
                    busy = self.runtime.run_once()
            except Exception:  # a store hiccup must not kill the server's only worker
                log.exception("background worker round failed; retrying")
                busy = 0
            if not busy:
                stop.wait(idle_sleep)

    # -- reading ---------------------------------------------------------------------------------

    def clock_state(self) -> dict[str, Any]:
        now = self.runtime.clock.now()
        return {"clock": self.clock, "now": datetime.fromtimestamp(now, UTC).isoformat()}

    def batches(self, limit: int) -> list[BatchProgress]:
        """The most recent batches, newest first."""
        return self.runtime.batches(limit)

    def close(self) -> None:
        self.runtime.store.close()
