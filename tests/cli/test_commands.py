"""`credit-contracts` commands as a user runs them: real subprocesses, --json parsed and checked.

The story test runs on SQLite and PostgreSQL; the error cases on SQLite, each checking that
a refused command left the store as it was.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .support import COMMAND, Result, fails, head, ok, run_cli

BATCH_KEYS = {
    "id",
    "customer_id",
    "status",
    "enumerated",
    "total",
    "done",
    "failed",
    "skipped",
    "cancelled",
    "pending",
    "in_flight",
    "rate",
    "eta_seconds",
    "superseded_by",
    "change_no",
    "finished",
}


def test_a_rating_change_story_through_every_command(store_url: str) -> None:
    db = ("--db", store_url)
    assert ok("customers", "register", "Acme Corp", "AA", "--id", "acme", *db) == {
        "id": "acme",
        "name": "Acme Corp",
        "rating": "AA",
    }
    other = ok("customers", "register", "--name", "Globex", "--rating", "bbb", *db)
    assert other["rating"] == "BBB" and other["name"] == "Globex" and len(other["id"]) == 36
    assert ok("contracts", "open", "acme", "--id", "k1", "--title", "Loan", *db) == {
        "id": "k1",
        "customer_id": "acme",
        "title": "Loan",
        "status": "active",
    }
    second = ok("contracts", "open", "acme", *db)["id"]

    opened = ok("contracts", "show", "k1", *db)
    assert (opened["id"], opened["customer_id"], opened["title"]) == ("k1", "acme", "Loan")
    assert opened["status"] == "active"
    assert [(e["command"], e["event"]) for e in opened["timeline"]] == [
        ("OpenContract", "ContractOpened")
    ]
    assert ok("batches", "list", *db) == {"batches": []}

    changed = ok("customers", "change-rating", "acme", "a", *db)
    assert changed == {
        "id": "acme",
        "old_rating": "AA",
        "new_rating": "A",
        "change_no": 1,
        "batch_id": "credit-acme-1",
    }
    before = head(store_url)
    assert "already has credit rating A" in fails("customers", "change-rating", "acme", "A", *db)
    assert "only a pending contract" in fails("contracts", "sign", "k1", *db)
    assert head(store_url) == before, "a refused command appends nothing"

    ran = ok("run", "--clock", "system", *db)
    assert ran["clock"] == "system" and ran["events"] > 0 and ran["work"] > 0
    assert set(ran) == {"rounds", "work", "clock_advances", "events", "seconds", "clock"}
    batch = ok("batches", "show", "credit-acme-1", *db)
    assert set(batch) == BATCH_KEYS
    assert (batch["id"], batch["customer_id"], batch["status"]) == (
        "credit-acme-1",
        "acme",
        "running",
    )
    assert batch["total"] == 2
    assert (batch["done"], batch["failed"], batch["pending"], batch["in_flight"]) == (0, 0, 0, 2)
    assert ok("contracts", "show", "k1", *db)["status"] == "pending"

    assert ok("contracts", "sign", "k1", *db) == {"id": "k1", "status": "resigned", "changed": True}
    assert ok("contracts", "sign", "k1", *db)["changed"] is False
    ok("run", *db)
    story = ok("contracts", "show", "k1", *db)
    assert story["status"] == "active"
    assert [e["command"] for e in story["timeline"]] == [
        "OpenContract",
        "RevokeCustomerContract",
        "RequestResignature",
        "SignContract",
        "ReconfirmContract",
    ]
    assert all(e["correlation_id"] and e["at"] for e in story["timeline"])
    assert ok("contracts", "show", second, *db)["status"] == "pending"

    batch = ok("batches", "show", "credit-acme-1", *db)
    assert (batch["done"], batch["in_flight"], batch["status"]) == (1, 1, "running")
    assert batch["rate"] > 0
    listed = ok("batches", "list", "--customer", "acme", *db)["batches"]
    assert [(b["id"], b["customer_id"], b["done"]) for b in listed] == [
        ("credit-acme-1", "acme", 1)
    ]
    assert ok("batches", "list", *db)["batches"] == listed
    acme = ok("customers", "show", "acme", *db)
    assert (acme["rating"], acme["rating_changes"], acme["completed_changes"]) == ("A", 1, 0)
    assert acme["contracts"] == {"active": 1, "pending": 1, "resigned": 0, "terminated": 0}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store with customer acme (AA) and its active contract k1."""
    url = f"sqlite:///{tmp_path_factory.mktemp('shop')}/shop.db"
    ok("customers", "register", "Acme", "AA", "--id", "acme", "--db", url)
    ok("contracts", "open", "acme", "--id", "k1", "--db", url)
    return url


REFUSED = [
    (["customers", "register", "X", "ZZ"], "unknown credit rating 'ZZ'"),
    (["customers", "register", " ", "AA"], "the customer name is empty"),
    (["customers", "register", "X", "AA", "--id", "acme"], "already registered"),
    (["customers", "register", "X", "AA", "--id", "bad id"], "bad customer id"),
    (["customers", "register", "X"], "a customer needs a rating: give RATING or --rating"),
    (["customers", "register", "X", "AA", "--name", "Y"], "the name is given twice"),
    (["customers", "change-rating", "nobody", "A"], "customer nobody does not exist"),
    (["customers", "change-rating", "acme", "AA"], "already has credit rating AA"),
    (["customers", "change-rating", "acme", "Q"], "unknown credit rating 'Q'"),
    (["customers", "show", "nobody"], "customer nobody does not exist"),
    (["contracts", "open", "nobody"], "customer nobody does not exist"),
    (["contracts", "open", "acme", "--id", "k1"], "contract k1 already exists"),
    (["contracts", "open", "acme", "--id", "-k"], "bad contract id"),
    (["contracts", "sign", "k1"], "k1 is active: only a pending contract can be signed"),
    (["contracts", "sign", "nope"], "contract nope does not exist"),
    (["contracts", "show", "nope"], "contract nope does not exist"),
    (["batches", "show", "nope"], "batch nope does not exist"),
    (["batches", "list", "--customer", "nobody"], "customer nobody does not exist"),
    (["batches", "list", "--limit", "0"], "Invalid value for '--limit'"),
    (["demo", "--contracts", "0"], "--contracts must be between 1 and 1000000"),
    (["demo", "--never-sign", "1.5"], "--never-sign must be between 0 and 1"),
    (["demo", "--workers", "2"], "--workers 2 needs PostgreSQL"),
    (["demo", "--contracts", "many"], "Invalid value for '--contracts'"),
    (["run", "--clock", "sundial"], "Invalid value for '--clock'"),
    (["contracts", "open", "acme", "--colour", "red"], "No such option: --colour"),
    (["contracts", "frobnicate"], "No such command 'frobnicate'"),
    (["contracts", "open"], "Missing argument"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_a_refused_command_says_why_and_changes_nothing(
    shop: str, args: list[str], message: str
) -> None:
    before = head(shop)
    assert message in fails(*args, "--db", shop)
    assert head(shop) == before


def test_without_json_an_error_is_one_line_on_stderr_only(shop: str) -> None:
    result = run_cli("contracts", "sign", "k1", "--db", shop)
    assert result.code == 2 and result.stdout == ""
    assert (
        result.stderr.startswith("error: contract k1 is active") and result.stderr.count("\n") == 1
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/x", "unknown store URL scheme 'mysql'"),
        ("postgresql://postgres@127.0.0.1:1/test", "cannot connect to"),
        ("sqlite:///{tmp}/no/such/dir/x.db", "no/such/dir"),
    ],
)
def test_an_unusable_store_url_is_one_line(tmp_path: Path, url: str, message: str) -> None:
    assert message in fails("customers", "register", "X", "AA", "--db", url.format(tmp=tmp_path))


def test_reading_a_missing_store_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    assert "no store at" in fails("batches", "list", "--db", f"sqlite:///{path}")
    assert "no store at" in fails("run", "--db", f"sqlite:///{path}")
    assert not path.exists()


def test_human_output_is_readable(shop: str) -> None:
    shown = run_cli("contracts", "show", "k1", "--db", shop)
    assert shown.code == 0 and "OpenContract" in shown.stdout and shown.stderr == ""
    listed = run_cli("batches", "list", "--db", shop)
    assert listed.code == 0 and "credit-change batches" in listed.stdout


def test_a_worker_processes_until_sigterm(pg_url: str) -> None:
    db = ("--db", pg_url)
    ok("customers", "register", "Acme", "AA", "--id", "acme", *db)
    for contract_id in ("k1", "k2"):
        ok("contracts", "open", "acme", "--id", contract_id, *db)
    ok("customers", "change-rating", "acme", "BB", *db)
    worker = subprocess.Popen(
        [*COMMAND, "worker", *db, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not revoked(run_cli("batches", "show", "credit-acme-1", *db, "--json"), 2):
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert json.loads(stdout) == {"worker": worker.pid, "stopped": True}
    assert b"Traceback" not in stderr
    assert ok("contracts", "show", "k2", *db)["status"] == "pending"


def revoked(shown: Result, contracts: int) -> bool:
    """The batch exists (the worker started it) and every contract awaits re-signing."""
    return shown.code == 0 and shown.data["in_flight"] == contracts
