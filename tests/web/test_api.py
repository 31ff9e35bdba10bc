"""The HTTP API end to end: the credit-change story, then every way a request can be wrong."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from credit_contracts.simulator import SimulationConfig, expected_outcome
from credit_contracts.views.batches import change_no_of
from credit_contracts.web import create_app
from procession import RecordedEvent, open_store

from .conftest import ClientFactory, TestClient

SIMULATION = SimulationConfig(seed=11, never_sign=0.3)


def register(
    client: TestClient, customer_id: str, contracts: int = 0, rating: str = "AA"
) -> list[str]:
    answer = client.post(
        "/api/customers", json={"id": customer_id, "name": "Ada", "rating": rating}
    )
    assert answer.status_code == 201, answer.text
    ids = [f"{customer_id}-c{n}" for n in range(contracts)]
    for contract_id in ids:
        body = {"customer_id": customer_id, "id": contract_id, "title": "Lease"}
        assert client.post("/api/contracts", json=body).status_code == 201
    return ids


def statuses(client: TestClient, customer_id: str) -> dict[str, str]:
    page = client.get(f"/api/customers/{customer_id}/contracts").json()
    return {row["id"]: row["status"] for row in page["contracts"]}


def log(url: str) -> list[RecordedEvent]:
    with open_store(url) as store:
        return list(store.read_all())


# -- the story -------------------------------------------------------------------------------


def test_a_rating_change_revokes_and_reconfirms_every_contract(make_client: ClientFactory):
    client = make_client(simulation=SIMULATION)
    ids = register(client, "ada", contracts=8)
    assert client.get("/api/customers/ada").json()["contracts"]["active"] == 8

    changed = client.post("/api/customers/ada/rating", json={"rating": "BB"})
    assert changed.status_code == 202
    assert changed.json()["rating"] == "BB"
    batch_id = changed.json()["batch_id"]
    assert batch_id == "credit-ada-1"
    assert client.get(f"/api/batches/{batch_id}").status_code == 404  # not started before a run

    ran = client.post("/api/run").json()
    assert ran["work"] > 0 and ran["clock_advances"] > 0 and ran["clock"] == "virtual"

    expected = {cid: expected_outcome(SIMULATION, cid) for cid in ids}
    reconfirmed = sum(outcome == "reconfirmed" for outcome in expected.values())
    batch = client.get(f"/api/batches/{batch_id}").json()
    assert batch["status"] == "completed"
    assert (batch["total"], batch["done"], batch["failed"]) == (8, reconfirmed, 8 - reconfirmed)
    assert (batch["pending"], batch["in_flight"], batch["skipped"], batch["cancelled"]) == (0,) * 4
    assert batch["eta_seconds"] is None and batch["rate"] > 0 and batch["customer_id"] == "ada"

    want = {cid: "active" if o == "reconfirmed" else "terminated" for cid, o in expected.items()}
    assert statuses(client, "ada") == want
    summary = client.get("/api/customers/ada").json()
    counts = Counter(want.values())
    assert summary["contracts"] == {
        "active": counts["active"],
        "pending": 0,
        "resigned": 0,
        "terminated": counts["terminated"],
        "total": 8,
    }
    assert (summary["rating_changes"], summary["completed_changes"]) == (1, 1)
    assert [b["id"] for b in summary["batches"]] == [batch_id]
    assert [b["id"] for b in client.get("/api/batches").json()["batches"]] == [batch_id]

    story = client.get(f"/api/contracts/{ids[0]}").json()
    events = [entry["event"] for entry in story["timeline"]]
    assert events[:3] == [
        "ContractOpened",
        "CustomerContractRevoked",
        "ContractResignatureRequested",
    ]
    assert story["status"] == want[ids[0]]


def test_contracts_signed_through_the_api_are_reconfirmed_the_others_terminated(
    client: TestClient,
):
    signed, silent = register(client, "bob", contracts=2)
    client.post("/api/customers/bob/rating", json={"rating": "CCC"})

    day = client.post("/api/run", json={"advance_days": 1}).json()
    assert day["now"].startswith("2030-01-02")
    batch = client.get("/api/batches/credit-bob-1").json()
    assert (batch["status"], batch["in_flight"], batch["finished"]) == ("running", 2, 0)
    assert statuses(client, "bob") == {signed: "pending", silent: "pending"}

    answer = client.post(f"/api/contracts/{signed}/sign")
    assert answer.status_code == 200 and answer.json()["status"] == "resigned"
    client.post("/api/run", json={"advance_days": 1})
    assert statuses(client, "bob") == {signed: "active", silent: "pending"}
    assert client.get("/api/batches/credit-bob-1").json()["done"] == 1

    client.post("/api/run")  # the silent customer's reminders and deadline fall due
    batch = client.get("/api/batches/credit-bob-1").json()
    assert (batch["status"], batch["done"], batch["failed"]) == ("completed", 1, 1)
    assert statuses(client, "bob") == {signed: "active", silent: "terminated"}
    events = [e["event"] for e in client.get(f"/api/contracts/{silent}").json()["timeline"]]
    assert events.count("ContractReminderSent") == 2 and events[-1] == "ContractTerminated"


def test_an_idempotency_key_makes_a_retried_request_harmless(client: TestClient, store_url: str):
    body = {"id": "cy", "name": "Cy", "rating": "A"}
    first = client.post("/api/customers", json=body, headers={"Idempotency-Key": "k1"})
    again = client.post("/api/customers", json=body, headers={"Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()  # the first answer, replayed (issue 9)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [e.type for e in log(store_url)].count("CustomerRegistered") == 1


def test_the_background_worker_moves_batches_without_a_run(make_client: ClientFactory):
    client = make_client(clock="system", worker=True)
    register(client, "dee", contracts=2)
    client.post("/api/customers/dee/rating", json={"rating": "B"})
    deadline = time.monotonic() + 10
    while set(statuses(client, "dee").values()) != {"pending"}:
        assert time.monotonic() < deadline, statuses(client, "dee")
        time.sleep(0.05)
    assert client.get("/api/batches/credit-dee-1").json()["in_flight"] == 2


def test_batch_ids_name_their_change_even_with_dashes_in_the_customer_id():
    assert change_no_of("credit-acme-eu-12") == 12
    assert change_no_of("nightly-cleanup") is None
    assert change_no_of("credit-acme-x") is None


def test_the_dashboard_is_one_page(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Run until idle" in page.text and 'data-testid="rating-form"' in page.text


# -- bad requests: a clear error, and nothing stored -----------------------------------------

JSON = {"content-type": "application/json"}

# (method, path, json body or raw bytes, status, words the error must contain)
BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    ("POST", "/api/customers", b'{"name": "Eve",', 422, "malformed JSON"),
    ("POST", "/api/customers", {"name": "Eve"}, 422, "rating: Field required"),
    ("POST", "/api/customers", {"name": 7, "rating": "A"}, 422, "name: Input should be a valid"),
    (
        "POST",
        "/api/customers",
        {"name": "Eve", "rating": "A", "ratting": "B"},
        422,
        "unknown field",
    ),
    ("POST", "/api/customers", [1, 2], 422, "must be a JSON object"),
    ("POST", "/api/customers", {"id": "a b", "name": "Eve", "rating": "A"}, 422, "id: bad id"),
    # since issue 9 the one validator refuses ratings and blank names at the door (422, not 409)
    ("POST", "/api/customers", {"name": "Eve", "rating": "ZZZ"}, 422, "unknown credit rating"),
    ("POST", "/api/customers", {"name": " ", "rating": "A"}, 422, "the name is empty"),
    ("POST", "/api/customers", {"id": "ada", "name": "Ada", "rating": "A"}, 409, "already"),
    ("POST", "/api/customers/ada/rating", {"rating": "AA"}, 409, "already has credit rating AA"),
    ("POST", "/api/customers/ada/rating", {"rating": "Q"}, 422, "unknown credit rating 'Q'"),
    ("POST", "/api/customers/ada/rating", {"rating": 5}, 422, "rating: Input should be a valid"),
    ("POST", "/api/customers/ada/rating", {}, 422, "rating: Field required"),
    ("POST", "/api/customers/nobody/rating", {"rating": "B"}, 404, "customer nobody does not"),
    ("POST", "/api/contracts", {"customer_id": "nobody"}, 404, "customer nobody does not exist"),
    ("POST", "/api/contracts", {"customer_id": "ada", "id": "ada-c0"}, 409, "already exists"),
    ("POST", "/api/contracts", {"title": "x"}, 422, "customer_id: Field required"),
    ("POST", "/api/contracts/ada-c0/sign", None, 409, "only a pending contract can be signed"),
    ("POST", "/api/contracts/nothing/sign", None, 404, "contract nothing does not exist"),
    ("GET", "/api/customers/nobody", None, 404, "customer nobody does not exist"),
    ("GET", "/api/customers/nobody/contracts", None, 404, "customer nobody does not exist"),
    ("GET", "/api/customers/ada/contracts?status=lost", None, 422, "query parameter status"),
    ("GET", "/api/customers?limit=0", None, 422, "query parameter limit"),
    ("GET", "/api/contracts/nothing", None, 404, "contract nothing does not exist"),
    ("GET", "/api/batches/nothing", None, 404, "batch nothing does not exist"),
    ("POST", "/api/run", {"advance_days": "soon"}, 422, "advance_days: Input should be"),
    ("POST", "/api/run", {"advance_days": -1}, 422, "advance_days: Input should be greater"),
    ("GET", "/api/nowhere", None, 404, "no such resource"),
    ("DELETE", "/api/customers", None, 405, "DELETE is not allowed"),
]


def send(client: TestClient, method: str, path: str, body: Any) -> Any:
    if isinstance(body, bytes):
        return client.request(method, path, content=body, headers=JSON)
    return client.request(method, path, json=body)


def test_every_bad_request_gets_a_clear_error_and_stores_nothing(
    client: TestClient, store_url: str
):
    register(client, "ada", contracts=1)
    before = log(store_url)
    wrong = []
    for method, path, body, status, words in BAD_REQUESTS:
        answer = send(client, method, path, body)
        is_json = answer.headers["content-type"] == "application/json"
        error = answer.json().get("error", "") if is_json else ""
        if answer.status_code != status or words not in error or "Traceback" in answer.text:
            wrong.append((method, path, body, answer.status_code, answer.text))
    assert wrong == []
    assert log(store_url) == before


def test_a_body_that_is_not_declared_json_is_refused_with_a_hint(client: TestClient):
    answer = client.post("/api/customers", content=b'{"name": "Eve", "rating": "A"}')
    assert answer.status_code == 415  # was 422 before writes took JSON only (issue 9)
    assert "Content-Type: application/json" in answer.json()["error"]


def test_a_system_clock_cannot_be_advanced(make_client: ClientFactory, store_url: str):
    client = make_client(clock="system")
    answer = client.post("/api/run", json={"advance_days": 1})
    assert answer.status_code == 409
    assert "advance_days needs a virtual clock" in answer.json()["error"]
    assert client.post("/api/run").json()["clock"] == "system"


def test_an_unknown_clock_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="clock must be"):
        create_app(f"sqlite:///{tmp_path}/s.db", clock="sundial")  # type: ignore[arg-type]


def test_an_unexpected_failure_answers_500_without_a_traceback(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
):
    client = make_client(raise_server_exceptions=False)
    system = client.app.state.system  # type: ignore[attr-defined]

    def broken(batch_id: str) -> None:
        raise RuntimeError("disk on fire at /secret/path")

    monkeypatch.setattr(system.runtime, "progress", broken)
    answer = client.get("/api/batches/x")
    assert answer.status_code == 500
    assert answer.json() == {
        "error": "internal error (RuntimeError); the server log has the details"
    }
