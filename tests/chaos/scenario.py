"""The credit scenario the chaos runs: a demo plan, its size, and its uninterrupted run."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from credit_contracts.demo import DemoPlan
from tests.cli.support import ok


@dataclass(frozen=True)
class Chaos:
    """How much chaos: the scenario's size and the faults thrown at it."""

    plan: DemoPlan
    kills: int
    """SIGKILLs: exactly this many on SQLite; at most this many on PostgreSQL, where the
    kills stop when the run is over."""
    min_kills: int = 0
    """On PostgreSQL, the fewest kills that must land before the run is over."""
    min_terminations: int = 0
    """On PostgreSQL, the fewest rounds of `pg_terminate_backend` that must cut sessions."""

    def rng(self, purpose: str) -> random.Random:
        """A seeded generator per kind of fault: one seed replays the same schedule."""
        return random.Random(f"chaos/{self.plan.seed}/{purpose}")


def demo_args(plan: DemoPlan) -> tuple[str, ...]:
    return (
        "demo",
        "--contracts",
        str(plan.contracts),
        "--customers",
        str(plan.customers),
        "--never-sign",
        str(plan.never_sign),
        "--seed",
        str(plan.seed),
    )


def uninterrupted(url: str, plan: DemoPlan) -> dict[str, Any]:
    summary = ok(*demo_args(plan), "--db", url)
    assert summary["matches_expected"] is True and summary["still_pending"] == 0, summary
    return summary


def seed() -> int:
    """CHAOS_SEED replays a failed run's schedule (read, never set, by the tests)."""
    return int(os.environ.get("CHAOS_SEED", "10"))


@dataclass
class Figures:
    """What a chaos run went through, printed for docs/reliability.md (`make chaos -s`)."""

    backend: str
    contracts: int
    kills: int = 0
    terminations: int = 0
    sessions_cut: int = 0
    events: int = 0
    positions_skipped: int = 0
    started: float = field(default_factory=time.monotonic)
    result: str = "running"

    def report(self) -> str:
        seconds = time.monotonic() - self.started
        return (
            f"chaos figures: backend={self.backend} contracts={self.contracts} "
            f"kills={self.kills} terminations={self.terminations} "
            f"sessions_cut={self.sessions_cut} events={self.events} "
            f"positions_skipped={self.positions_skipped} "
            f"seconds={seconds:.1f} result={self.result}"
        )
