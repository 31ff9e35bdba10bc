"""Acceptance: the reference system answers the seed question end to end, on both backends.

Each test drives the system through commands, runs it on a virtual clock until idle, and
checks the outcome through the log (`Store.read_all`), the read models and batch progress.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from credit_contracts.app import customer_batches, open_system
from credit_contracts.domain.messages import (
    ChangeCustomerCreditRating,
    OpenContract,
    ReconfirmContract,
    RegisterCustomer,
    RequestResignature,
    RevokeCustomerContract,
    SendReminder,
    SignContract,
    TerminateContract,
)
from credit_contracts.processes.credit_change import batch_id_for
from credit_contracts.simulator import SimulationConfig, behaviour, expected_outcome
from credit_contracts.views.contracts_by_customer import contracts_of, get_contract
from credit_contracts.views.customer_summary import customer_summary
from credit_contracts.views.timeline import timeline
from procession import CommandRejected, ConfigurationError, NotFound, Skipped, derived_id
from procession.runtime.operations import status as engine_status

from .system import System, at

DAY = 86_400.0
SIM = SimulationConfig(seed=11, never_sign=0.2)
EVERYONE_SIGNS = SimulationConfig(seed=5, never_sign=0.0, late=0.0)
Make = Callable[..., System]


def final_outcomes(system: System, contract_ids: list[str]) -> dict[str, str]:
    """'reconfirmed' or 'terminated' per contract, read from the whole log (`read_all`):
    fails unless each contract ended exactly once."""
    ends: dict[str, list[str]] = {cid: [] for cid in contract_ids}
    for e in system.events("CustomerContractReconfirmed", "ContractTerminated"):
        ends.setdefault(e.data["contract_id"], []).append(e.type)
    once = {cid: types for cid, types in ends.items() if cid in contract_ids}
    assert all(len(types) == 1 for types in once.values()), once
    name = {"CustomerContractReconfirmed": "reconfirmed", "ContractTerminated": "terminated"}
    return {cid: name[types[0]] for cid, types in once.items()}


def assert_nothing_left(system: System) -> None:
    """No delivery, command or timer waiting, none parked: every step succeeded."""
    health = engine_status(system.store)
    assert (health["inbox"], health["commands_pending"], health["timers"], health["parked"]) == (
        0,
        0,
        0,
        0,
    )


def completions(system: System) -> list[dict[str, object]]:
    return [e.data for e in system.events("CreditChangeCompleted")]


def test_a_rating_change_reconfirms_or_terminates_every_contract(make_system: Make) -> None:
    system = make_system(SIM)
    ids = system.customer("acme", contracts=150)
    system.change("acme", "A")
    system.run()

    expected = {cid: expected_outcome(SIM, cid) for cid in ids}
    assert final_outcomes(system, ids) == expected
    tally = Counter(expected.values())
    assert 0 < tally["terminated"] < len(ids)
    batch = batch_id_for("acme", 1)
    assert completions(system) == [
        {
            "customer_id": "acme",
            "change_no": 1,
            "batch_id": batch,
            "reconfirmed": tally["reconfirmed"],
            "terminated": tally["terminated"],
            "skipped": 0,
        }
    ]
    progress = system.runtime.progress(batch)
    assert progress is not None
    assert (progress.status, progress.total, progress.done, progress.failed) == (
        "completed",
        len(ids),
        tally["reconfirmed"],
        tally["terminated"],
    )
    assert (progress.pending, progress.in_flight, progress.skipped) == (0, 0, 0)
    assert_nothing_left(system)


def test_messages_carry_the_batch_as_correlation_and_the_command_as_cause(
    make_system: Make,
) -> None:
    system = make_system(SIM)
    ids = system.customer("acme", contracts=5)
    system.change("acme", "BBB")
    system.run()

    batch = batch_id_for("acme", 1)
    for cid in ids:
        revoked, *later = system.of_contract(cid)[1:]
        assert revoked.type == "CustomerContractRevoked"
        assert revoked.metadata["causation_id"] == derived_id("batch", batch, cid)
        assert {e.metadata["correlation_id"] for e in [revoked, *later]} == {batch}


def test_the_read_models_follow_the_contracts(make_system: Make) -> None:
    system = make_system(SIM)
    ids = system.customer("acme", contracts=20)
    system.change("acme", "CCC")
    system.run()

    outcomes = final_outcomes(system, ids)
    status = {"reconfirmed": "active", "terminated": "terminated"}
    rows = contracts_of(system.store, "acme", limit=1000)
    assert {r.contract_id: r.status for r in rows} == {c: status[o] for c, o in outcomes.items()}
    page = contracts_of(system.store, "acme", after=ids[9], limit=5)
    assert [r.contract_id for r in page] == ids[10:15]
    terminated = [c for c, o in outcomes.items() if o == "terminated"]
    assert [r.contract_id for r in contracts_of(system.store, "acme", "terminated")] == terminated

    summary = customer_summary(system.store, "acme")
    assert summary is not None
    assert (summary.rating, summary.rating_changes, summary.completed_changes) == ("CCC", 1, 1)
    assert (summary.active, summary.terminated, summary.pending, summary.resigned) == (
        len(ids) - len(terminated),
        len(terminated),
        0,
        0,
    )
    assert not summary.change_in_progress
    assert customer_summary(system.store, "nobody") is None

    system.runtime.rebuild("customer_summary")
    assert customer_summary(system.store, "acme") == summary


def test_the_timeline_tells_each_contract_story(make_system: Make) -> None:
    system = make_system(SimulationConfig(seed=2, never_sign=0.5))
    ids = system.customer("acme", contracts=10)
    system.change("acme", "BB")
    system.run()

    outcomes = final_outcomes(system, ids)
    gone = next(c for c, o in outcomes.items() if o == "terminated")
    entries = timeline(system.store, gone)
    assert [(e.event_type, e.command) for e in entries] == [
        ("ContractOpened", "OpenContract"),
        ("CustomerContractRevoked", "RevokeCustomerContract"),
        ("ContractResignatureRequested", "RequestResignature"),
        ("ContractReminderSent", "SendReminder"),
        ("ContractReminderSent", "SendReminder"),
        ("ContractTerminated", "TerminateContract"),
    ]
    assert "3-day timer" in entries[3].summary and "7-day timer" in entries[4].summary
    assert entries[-1].summary == "terminated: not re-signed within 14 days"
    log = system.of_contract(gone)
    assert [e.causation_id for e in entries] == [e.metadata["causation_id"] for e in log]
    assert {e.correlation_id for e in entries[1:]} == {batch_id_for("acme", 1)}

    kept = next(c for c, o in outcomes.items() if o == "reconfirmed")
    types = [e.event_type for e in timeline(system.store, kept)]
    assert types[-2:] == ["ContractResigned", "CustomerContractReconfirmed"]


def test_contracts_opened_after_the_change_are_not_revoked(make_system: Make) -> None:
    system = make_system(EVERYONE_SIGNS)
    before = system.customer("acme", contracts=5)
    system.change("acme", "A")
    after = [f"acme-late-{i}" for i in range(3)]
    system.open("acme", after)  # committed after the change, before anything ran
    system.run()

    progress = system.runtime.progress(batch_id_for("acme", 1))
    assert progress is not None and progress.total == len(before)
    assert final_outcomes(system, before) == dict.fromkeys(before, "reconfirmed")
    for cid in after:
        assert [e.type for e in system.of_contract(cid)] == ["ContractOpened"]
        row = get_contract(system.store, cid)
        assert row is not None and row.status == "active"
    assert completions(system)[0]["reconfirmed"] == len(before)


def test_a_terminated_contract_is_skipped(make_system: Make) -> None:
    system = make_system(EVERYONE_SIGNS)
    ids = system.customer("acme", contracts=4)
    system.runtime.send(TerminateContract(contract_id=ids[0], reason="customer moved away"))
    system.change("acme", "B")
    system.run()

    assert "CustomerContractRevoked" not in [e.type for e in system.of_contract(ids[0])]
    progress = system.runtime.progress(batch_id_for("acme", 1))
    assert progress is not None
    assert (progress.total, progress.done, progress.skipped, progress.failed) == (4, 3, 1, 0)
    done = completions(system)[0]
    assert (done["reconfirmed"], done["terminated"], done["skipped"]) == (3, 0, 1)


def test_a_customer_without_contracts_completes_at_once(make_system: Make) -> None:
    system = make_system(SIM)
    system.customer("lonely")
    system.change("lonely", "D")
    stats = system.run()

    assert stats.clock_advances == 0
    [done] = system.events("CreditChangeCompleted")
    [changed] = system.events("CustomerCreditRatingChanged")
    assert at(done) == at(changed)
    assert (done.data["reconfirmed"], done.data["terminated"], done.data["skipped"]) == (0, 0, 0)
    progress = system.runtime.progress(batch_id_for("lonely", 1))
    assert progress is not None and (progress.status, progress.total) == ("completed", 0)


def test_a_second_change_supersedes_the_running_batch(make_system: Make) -> None:
    system = make_system(SIM, max_in_flight=4)
    ids = system.customer("acme", contracts=30)
    system.change("acme", "A")
    for _ in range(3):  # part of the first batch is revoked, the rest not yet dispatched
        system.runtime.run_once()
    revoked_early = {e.data["contract_id"] for e in system.events("CustomerContractRevoked")}
    assert 0 < len(revoked_early) < len(ids)
    system.change("acme", "BBB")
    system.run()

    first, second = customer_batches(system.runtime, "acme")
    assert (first.status, first.superseded_by) == ("cancelled", second.batch_id)
    assert first.cancelled > 0 and first.pending == first.in_flight == 0
    assert (second.status, second.total, second.cancelled) == ("completed", len(ids), 0)

    revocations = Counter(e.data["contract_id"] for e in system.events("CustomerContractRevoked"))
    assert revocations == dict.fromkeys(ids, 1)  # carried contracts were not revoked twice
    outcomes = final_outcomes(system, ids)  # each reconfirmed once or terminated once
    assert outcomes == {cid: expected_outcome(SIM, cid) for cid in ids}
    tally = Counter(outcomes.values())
    assert completions(system) == [
        {
            "customer_id": "acme",
            "change_no": 2,
            "batch_id": second.batch_id,
            "reconfirmed": tally["reconfirmed"],
            "terminated": tally["terminated"],
            "skipped": 0,
        }
    ]
    summary = customer_summary(system.store, "acme")
    assert summary is not None
    assert (summary.rating, summary.rating_changes, summary.completed_changes) == ("BBB", 2, 2)
    assert_nothing_left(system)


def test_a_later_change_revokes_the_reconfirmed_contracts_again(make_system: Make) -> None:
    system = make_system(EVERYONE_SIGNS)
    ids = system.customer("acme", contracts=6)
    system.change("acme", "A")
    system.run()
    system.change("acme", "AA")
    system.run()

    revocations = Counter(e.data["contract_id"] for e in system.events("CustomerContractRevoked"))
    assert revocations == dict.fromkeys(ids, 2)
    assert [(d["change_no"], d["reconfirmed"]) for d in completions(system)] == [(1, 6), (2, 6)]


def test_reminders_at_day_3_and_7_and_termination_at_day_14(make_system: Make) -> None:
    system = make_system()  # nobody answers: no simulated customers
    ids = system.customer("acme", contracts=3)
    system.change("acme", "C")
    system.run()

    for cid in ids:
        [revoked] = system.of_contract(cid, "CustomerContractRevoked")
        reminders = system.of_contract(cid, "ContractReminderSent")
        [terminated] = system.of_contract(cid, "ContractTerminated")
        assert [(r.data["n"], at(r) - at(revoked)) for r in reminders] == [
            (1, 3 * DAY),
            (2, 7 * DAY),
        ]
        assert at(terminated) - at(revoked) == 14 * DAY
        assert terminated.data["reason"] == "not re-signed within 14 days"
    done = completions(system)[0]
    assert (done["reconfirmed"], done["terminated"]) == (0, 3)


def test_a_signature_cancels_the_remaining_timers(make_system: Make) -> None:
    after_first = SimulationConfig(
        seed=3,
        never_sign=0.0,
        prompt=0.0,
        after_first_reminder=1.0,
        after_second_reminder=0.0,
        late=0.0,
    )
    system = make_system(after_first)
    ids = system.customer("acme", contracts=4)
    system.change("acme", "A")
    system.run()

    for cid in ids:
        [revoked] = system.of_contract(cid, "CustomerContractRevoked")
        [resigned] = system.of_contract(cid, "ContractResigned")
        assert [r.data["n"] for r in system.of_contract(cid, "ContractReminderSent")] == [1]
        assert 3 * DAY < at(resigned) - at(revoked) < 7 * DAY
        assert not system.of_contract(cid, "ContractTerminated")
    assert system.runtime.next_due() is None  # no timer left behind


def test_the_same_rating_is_rejected(make_system: Make) -> None:
    system = make_system()
    system.customer("acme", rating="AA")
    head = system.store.head_position()
    with pytest.raises(CommandRejected, match="already has credit rating AA"):
        system.change("acme", "AA")
    with pytest.raises(CommandRejected, match="unknown credit rating 'Z'"):
        system.change("acme", "Z")
    with pytest.raises(CommandRejected, match="unknown credit rating"):
        system.runtime.send(RegisterCustomer(customer_id="x", name="X", rating="AAAA"))
    assert system.store.head_position() == head


def test_an_unknown_customer_is_not_found(make_system: Make) -> None:
    system = make_system()
    with pytest.raises(NotFound, match="customer ghost does not exist"):
        system.runtime.send(ChangeCustomerCreditRating(customer_id="ghost", new_rating="A"))
    with pytest.raises(NotFound, match="customer ghost does not exist"):
        system.runtime.send(OpenContract(contract_id="c1", customer_id="ghost"))
    assert system.store.head_position() == 0


def test_illegal_transitions_are_rejected(make_system: Make) -> None:
    system = make_system()
    [cid, other] = system.customer("acme", contracts=2)
    send = system.runtime.send
    head = system.store.head_position()
    with pytest.raises(CommandRejected, match="already exists"):
        send(OpenContract(contract_id=cid, customer_id="acme"))
    with pytest.raises(CommandRejected, match="only a pending contract can be signed"):
        send(SignContract(contract_id=cid))
    with pytest.raises(CommandRejected, match="only a re-signed contract can be re-confirmed"):
        send(ReconfirmContract(contract_id=cid))
    with pytest.raises(CommandRejected, match="only a pending contract can remind"):
        send(SendReminder(contract_id=cid, n=1))
    with pytest.raises(CommandRejected, match="only a pending contract"):
        send(RequestResignature(contract_id=cid))
    with pytest.raises(NotFound, match="contract nope does not exist"):
        send(SignContract(contract_id="nope"))
    with pytest.raises(CommandRejected, match="belongs to customer acme"):
        send(
            RevokeCustomerContract(
                contract_id=cid, customer_id="other", change_no=1, change_position=0
            )
        )
    assert system.store.head_position() == head

    send(TerminateContract(contract_id=other, reason="fraud"))
    with pytest.raises(CommandRejected, match=r"terminated \(fraud\): it cannot be terminated"):
        send(TerminateContract(contract_id=other, reason="again"))
    with pytest.raises(CommandRejected, match="terminated"):
        send(SignContract(contract_id=other))
    with pytest.raises(Skipped, match="nothing to revoke"):
        send(
            RevokeCustomerContract(
                contract_id=other, customer_id="acme", change_no=1, change_position=0
            )
        )


def run_outcomes(make_system: Make, url: str, ids: list[str]) -> dict[str, tuple[str, float]]:
    """Open `ids` in the given order, change the rating, run: per contract, its outcome and
    when it happened, relative to its revocation."""
    system = make_system(SIM, url=url)
    system.customer("acme")
    system.open("acme", ids)
    system.change("acme", "A")
    system.run()
    result = {}
    for cid, outcome in final_outcomes(system, ids).items():
        [revoked] = system.of_contract(cid, "CustomerContractRevoked")
        [end] = system.of_contract(cid, "CustomerContractReconfirmed", "ContractTerminated")
        result[cid] = (outcome, at(end) - at(revoked))
    return result


def test_the_simulator_is_deterministic_whatever_the_creation_order(
    make_system: Make, store_url: str, tmp_path: object
) -> None:
    ids = [f"contract-{i:02d}" for i in range(25)]
    shuffled = ids[:]
    random.Random(99).shuffle(shuffled)
    first = run_outcomes(make_system, store_url, ids)
    second = run_outcomes(make_system, f"sqlite:///{tmp_path}/second.db", shuffled)
    assert first == second
    assert {cid: o for cid, (o, _) in first.items()} == {
        cid: expected_outcome(SIM, cid) for cid in ids
    }
    kinds = Counter(behaviour(SIM, cid).kind for cid in ids)
    assert len(kinds) >= 4  # the sample covers prompt, reminded, late and never signers


def test_the_simulation_is_durable_in_the_store(store_url: str) -> None:
    config = SimulationConfig(seed=42, never_sign=0.3)
    runtime = open_system(store_url, config, virtual=True)
    runtime.store.close()

    restarted = open_system(store_url, virtual=True)
    try:
        simulator = restarted.app.processes["CustomerSimulator"]
        assert simulator.config == config  # type: ignore[attr-defined]
        assert restarted.clock.virtual
    finally:
        restarted.store.close()
    with pytest.raises(ConfigurationError, match="already runs the simulation"):
        open_system(store_url, SimulationConfig(seed=43), virtual=True)


def revoke_first_batch(system: System, contract_id: str) -> None:
    """Run (without moving the clock) until the first batch has revoked `contract_id`."""
    for _ in range(10):
        if system.of_contract(contract_id, "CustomerContractRevoked"):
            return
        system.runtime.run_once()
    raise AssertionError(f"{contract_id} was not revoked")


def test_a_contract_resigned_after_a_second_change_is_carried(make_system: Make) -> None:
    system = make_system()
    [cid] = system.customer("acme", contracts=1)
    system.change("acme", "A")
    revoke_first_batch(system, cid)
    system.change("acme", "BBB")
    system.runtime.send(SignContract(contract_id=cid))  # re-signed after the second change
    system.run()

    assert len(system.of_contract(cid, "CustomerContractRevoked")) == 1
    assert final_outcomes(system, [cid]) == {cid: "reconfirmed"}
    [done] = completions(system)
    assert (done["change_no"], done["terminated"]) == (2, 0)
    assert done["reconfirmed"] + done["skipped"] == 1


def test_a_contract_resigned_before_a_second_change_is_revoked_for_it(make_system: Make) -> None:
    system = make_system()
    [cid] = system.customer("acme", contracts=1)
    system.change("acme", "A")
    revoke_first_batch(system, cid)
    system.runtime.send(SignContract(contract_id=cid))  # re-signed before the second change,
    system.change("acme", "BBB")  # re-confirmed after it: the new rating needs a new signature
    system.run()

    assert len(system.of_contract(cid, "CustomerContractRevoked")) == 2
    [done] = system.events("CreditChangeCompleted")
    [*_, last] = system.of_contract(cid)
    assert last.type == "ContractTerminated"  # nobody signs the second time
    assert done.position > last.position, "the change completed before the contract did"
    assert (done.data["reconfirmed"], done.data["terminated"]) == (0, 1)
