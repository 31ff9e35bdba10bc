"""How much work one transaction of each stage takes on (a declared object, not constants)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bigger batches pay Python's and the database's per-transaction costs less often; on
    PostgreSQL they also hold claims and the append lock longer while other workers wait.
    Each backend's coordination object brings its default."""

    log_page: int = 1000
    instances: int = 200
    commands: int = 500
    timers: int = 1000
    hand_off: bool = True
    """The router and the timers run the steps of free instances in their own transaction
    (no inbox row). Off, every delivery goes through the inbox and any worker's processes
    stage may take it: slower for one worker, more even across many (see operations)."""
