"""`credit-contracts demo`: customers, contracts, a rating change and simulated customers,
run to the end on virtual time, in one process or in worker processes on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from credit_contracts.demo import DemoPlan
from credit_contracts.simulator import expected_outcome

from .support import fails, final_statuses, logged_outcomes, ok, run_cli

SUMMARY_KEYS = {
    "contracts",
    "reconfirmed",
    "terminated",
    "still_pending",
    "batch_status",
    "events",
    "seconds",
    "events_per_second",
    "batch_id",
    "virtual_days",
    "affected",
    "untouched",
    "matches_expected",
}


def check_finished(data: dict[str, Any], plan: DemoPlan) -> None:
    assert set(data) >= SUMMARY_KEYS
    assert data["contracts"] == plan.contracts and data["customers"] == plan.customers
    assert data["batch_id"] == plan.batch_id and data["batch_status"] == "completed"
    assert data["still_pending"] == 0
    assert data["reconfirmed"] + data["terminated"] == data["affected"] == plan.affected
    assert data["affected"] + data["untouched"] == plan.contracts
    assert data["matches_expected"] is True
    assert data["statuses"] == {
        "active": plan.contracts - data["terminated"],
        "pending": 0,
        "resigned": 0,
        "terminated": data["terminated"],
    }
    assert data["events"] > plan.contracts and data["events_per_second"] > 0
    assert 14 < data["virtual_days"] < 30


def check_outcomes(url: str, plan: DemoPlan) -> None:
    """Per contract, the log holds exactly the end the simulation predicts."""
    expected = {cid: expected_outcome(plan.simulation, cid) for cid in plan.contracts_of_changed()}
    assert logged_outcomes(url) == expected


def test_demo_reconfirms_or_terminates_every_affected_contract(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    plan = DemoPlan(seed=4, contracts=300, customers=3, never_sign=0.2)
    data = ok("demo", "--contracts", "300", "--seed", "4", "--never-sign", "0.2", "--db", url)
    check_finished(data, plan)
    assert 0 < data["terminated"] < data["reconfirmed"]
    check_outcomes(url, plan)
    again = ok("demo", "--contracts", "300", "--seed", "4", "--never-sign", "0.2", "--db", url)
    assert again["events"] == 0 and again["reconfirmed"] == data["reconfirmed"]


def test_with_one_customer_every_contract_is_in_the_batch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/one.db"
    data = ok("demo", "--contracts", "120", "--customers", "1", "--seed", "2", "--db", url)
    assert data["reconfirmed"] + data["terminated"] == data["contracts"] == 120
    assert data["still_pending"] == 0 and data["untouched"] == 0


def test_a_store_keeps_its_demo(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/kept.db"
    ok("demo", "--contracts", "20", "--seed", "3", "--db", url)
    assert "already holds the demo seed=3" in fails("demo", "--contracts", "21", "--db", url)
    assert "use --clock virtual" in fails("run", "--clock", "system", "--db", url)
    assert ok("run", "--db", url)["still_pending"] == 0


def test_human_output_has_a_summary_and_no_json(tmp_path: Path) -> None:
    result = run_cli("demo", "--contracts", "30", "--db", f"sqlite:///{tmp_path}/h.db")
    assert result.code == 0 and not result.stdout.lstrip().startswith("{")
    assert "still_pending" in result.stdout and "reconfirmed" in result.stdout


def test_workers_share_the_demo_on_postgres(pg_url: str) -> None:
    plan = DemoPlan(seed=6, contracts=300, customers=2)
    data = ok(
        "demo",
        "--contracts",
        "300",
        "--customers",
        "2",
        "--seed",
        "6",
        "--workers",
        "2",
        "--db",
        pg_url,
    )
    check_finished(data, plan)
    assert data["workers"] == 2
    check_outcomes(pg_url, plan)
    statuses = final_statuses(pg_url, plan.customer_ids)
    assert len(statuses) == 300 and set(statuses.values()) == {"active", "terminated"}
