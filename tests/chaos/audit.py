"""The audit of a credit scenario's raw log, after chaos: what went in, judged from outside.

It reads only `procession.open_store(url).read_all()` (types, stream ids, versions,
positions, payloads) and, for the one thing the log does not hold (the batch's item rows),
the public `credit-contracts batches show --json`. Nothing of the engine's own bookkeeping
(inbox, checkpoints, tracking rows) is trusted: a bug there is what the audit must catch.

A scenario here is one demo plan: one rating change of one customer, so one batch, and each
of that customer's contracts is revoked once and ends once, re-confirmed or terminated.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from credit_contracts.demo import DemoPlan
from procession import RecordedEvent, open_store
from tests.cli.support import ok

REVOKED = "CustomerContractRevoked"
OUTCOMES = {"CustomerContractReconfirmed": "reconfirmed", "ContractTerminated": "terminated"}
ONCE_PER_CONTRACT = ("ContractOpened", REVOKED, "ContractResignatureRequested", "ContractResigned")
"""Effects a contract has at most once in this scenario: a second one is a doubled step."""
ONCE_PER_SCENARIO = (
    "DemoPlanned",
    "SimulationConfigured",
    "CustomerCreditRatingChanged",
    "CreditChangeCompleted",
)


@dataclass
class Audit:
    """What the log says, contract by contract, once every invariant has held."""

    events: int
    outcomes: dict[str, str]
    """Each revoked contract's one outcome: 'reconfirmed' or 'terminated'."""
    histories: dict[str, tuple[str, ...]] = field(repr=False)
    """Each contract's event types in stream order (its whole life)."""
    skipped: int = 0
    """Positions no event holds (PostgreSQL only: appends rolled back)."""


def read_log(url: str) -> list[RecordedEvent]:
    with open_store(url) as store:
        return list(store.read_all())


def audit(url: str, plan: DemoPlan) -> Audit:
    """Every invariant of the log of `plan`'s demo at `url`; the outcomes it records."""
    events = read_log(url)
    skipped = check_positions(events, url)
    check_versions(events)
    histories = contract_histories(events)
    check_once(events, histories)
    outcomes = check_revocations(histories, plan)
    check_batch(events, outcomes, plan, url)
    types = {contract: tuple(e.type for e in history) for contract, history in histories.items()}
    return Audit(len(events), outcomes, types, skipped)


def check_positions(events: list[RecordedEvent], url: str) -> int:
    """Positions strictly increase; on SQLite they are 1..N. On PostgreSQL an append rolled
    back (its worker killed, its session terminated) has drawn identity values that no event
    will use: a gap, which `docs/operations.md` allows. A gap hides no event: the audit
    compares every contract's whole history and the event count with the uninterrupted run.
    Returns the number of positions skipped."""
    positions = [e.position for e in events]
    pairs = zip([0, *positions], positions, strict=False)
    assert all(a < b for a, b in pairs), "log positions do not increase"
    skipped = positions[-1] - len(positions) if positions else 0
    if url.startswith("sqlite"):
        assert skipped == 0, f"log positions are not 1..N: {skipped} skipped"
    return skipped


def check_versions(events: Iterable[RecordedEvent]) -> None:
    versions: dict[str, list[int]] = defaultdict(list)
    for event in events:
        versions[event.stream_id].append(event.version)
    broken = {s: v for s, v in versions.items() if v != list(range(1, len(v) + 1))}
    assert not broken, f"streams whose versions are not 1..n: {sorted(broken)[:5]}"


def contract_histories(events: Iterable[RecordedEvent]) -> dict[str, list[RecordedEvent]]:
    histories: dict[str, list[RecordedEvent]] = defaultdict(list)
    for event in events:
        if event.stream_id.startswith("Contract-"):
            assert event.data["contract_id"] == event.stream_id.removeprefix("Contract-")
            histories[event.data["contract_id"]].append(event)
    return histories


def check_once(events: list[RecordedEvent], histories: dict[str, list[RecordedEvent]]) -> None:
    """No doubled effect: no event twice (by id), no once-only effect twice per contract, no
    reminder twice, no scenario-level event twice."""
    ids = Counter(e.metadata["message_id"] for e in events)
    assert ids.most_common(1)[0][1] == 1, f"an event was appended twice: {ids.most_common(1)}"
    per_type = Counter(e.type for e in events)
    doubled = {t: per_type[t] for t in ONCE_PER_SCENARIO if per_type[t] != 1}
    assert not doubled, f"scenario events not there exactly once: {doubled}"
    for contract, history in histories.items():
        kinds = Counter(e.type for e in history)
        twice = [t for t in ONCE_PER_CONTRACT if kinds[t] > 1]
        reminders = [e.data["n"] for e in history if e.type == "ContractReminderSent"]
        assert not twice, f"contract {contract}: {twice} more than once"
        assert reminders == sorted(set(reminders)), f"contract {contract}: reminders {reminders}"


def check_revocations(histories: dict[str, list[RecordedEvent]], plan: DemoPlan) -> dict[str, str]:
    """Exactly the changed customer's contracts are revoked, and each revocation has exactly
    one outcome, after it, and nothing follows that outcome."""
    revoked = {c for c, history in histories.items() if any(e.type == REVOKED for e in history)}
    assert revoked == set(plan.contracts_of_changed()), "the revoked contracts are not the plan's"
    outcomes = {}
    for contract in revoked:
        history = histories[contract]
        ends = [k for k, e in enumerate(history) if e.type in OUTCOMES]
        start = next(k for k, e in enumerate(history) if e.type == REVOKED)
        assert len(ends) == 1, f"contract {contract}: {len(ends)} outcomes of one revocation"
        assert start < ends[0] == len(history) - 1, f"contract {contract}: events out of order"
        outcomes[contract] = OUTCOMES[history[ends[0]].type]
    untouched = {c for c in histories if c not in revoked}
    assert all(len(histories[c]) == 1 for c in untouched), "an unrevoked contract changed"
    return outcomes


def check_batch(
    events: list[RecordedEvent], outcomes: dict[str, str], plan: DemoPlan, url: str
) -> None:
    """The batch's recorded counts equal the outcomes in the log and the batch's item rows."""
    [completed] = [e.data for e in events if e.type == "CreditChangeCompleted"]
    tally = Counter(outcomes.values())
    recorded = (completed["reconfirmed"], completed["terminated"], completed["skipped"])
    assert recorded == (tally["reconfirmed"], tally["terminated"], 0), (completed, tally)
    rows = ok("batches", "show", plan.batch_id, "--db", url)
    assert rows["status"] == "completed"
    assert rows["total"] == rows["finished"] == len(outcomes) == plan.affected
    assert (rows["done"], rows["failed"], rows["skipped"]) == recorded
    assert (rows["pending"], rows["in_flight"], rows["cancelled"]) == (0, 0, 0)


def assert_same_outcomes(chaotic: Audit, reference: Audit) -> None:
    """Contract by contract, the same ending and the same life as the uninterrupted run."""
    differ = {
        c: (o, reference.outcomes.get(c))
        for c, o in chaotic.outcomes.items()
        if reference.outcomes.get(c) != o
    }
    assert not differ and chaotic.outcomes.keys() == reference.outcomes.keys(), (
        f"{len(differ)} contracts end otherwise than uninterrupted: {list(differ.items())[:5]}"
    )
    lives = [c for c in reference.histories if chaotic.histories.get(c) != reference.histories[c]]
    examples = {c: (chaotic.histories.get(c), reference.histories[c]) for c in lives[:3]}
    assert not lives, f"{len(lives)} contracts lived otherwise (chaos, reference): {examples}"
    assert chaotic.events == reference.events
