"""The operator's API: parked work, health, stuck work, batch control and paging with totals.

On every backend (the `store_url` fixture), on a virtual clock.
"""

from __future__ import annotations

from typing import Any

from credit_contracts.domain.messages import OpenContract
from procession import Runtime

from .conftest import TestClient
from .test_api import register

BATCH = "credit-ada-1"


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.system.runtime  # type: ignore[attr-defined]
    return runtime


def run(client: TestClient, **body: Any) -> dict[str, Any]:
    answer = client.post("/api/run", json=body or None)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def started_not_dispatched(client: TestClient, contracts: int = 5) -> None:
    """ada's rating changed, her batch enumerated: every item pending, nothing dispatched."""
    register(client, "ada", contracts=contracts)
    assert client.post("/api/customers/ada/rating", json={"rating": "BB"}).status_code == 202
    runtime = runtime_of(client)
    stages = set(runtime.log.consumers) | {"processes"}
    for _ in range(10):  # routed, the process starts the batch; the batches stage is held
        runtime.run_once_stages(stages)
        if runtime.progress(BATCH) is not None:
            break
    assert client.get(f"/api/batches/{BATCH}").status_code == 200


def pages(client: TestClient, url: str, key: str, limit: int) -> tuple[list[Any], set[int]]:
    """Every item of a paged list, following `next`; and each page's `total`."""
    found: list[Any] = []
    totals: set[int] = set()
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({} if after is None else {"after": after})
        answer = client.get(url, params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        found.extend(page[key])
        totals.add(page["total"])
        after = page["next"]
        if after is None:
            return found, totals


# -- parked work -----------------------------------------------------------------------------


def poison(runtime: Runtime) -> None:
    """A stray row where the contracts projection will insert `ada-c9`."""
    with runtime.store.session(write=True) as session:
        session.sql(
            "INSERT INTO cc_contracts (contract_id, customer_id, title, status, born_at, "
            "updated_at) VALUES ('ada-c9', 'ada', 'stray', 'active', 0, '')"
        )


def cure(runtime: Runtime) -> None:
    with runtime.store.session(write=True) as session:
        session.sql("DELETE FROM cc_contracts WHERE contract_id = 'ada-c9' AND title = 'stray'")


def test_a_failing_projection_is_parked_listed_and_retried_once_fixed(
    client: TestClient,
):
    """A stray row in the contracts read model clashes with the next contract's: the
    projection fails, is retried, then parked; the row removed, a retry over HTTP lets it go
    on. On PostgreSQL this is also the regression test of a failed pipelined flush leaving
    psycopg's prepared-statement cache naming statements the server never parsed (every
    later round failed with `prepared statement "_pg3_N" does not exist`)."""
    register(client, "ada")
    runtime = runtime_of(client)
    poison(runtime)
    runtime.send(OpenContract(contract_id="ada-c9", customer_id="ada", title="Lease"))
    run(client)  # the virtual clock moves through the retries until it parks

    parked = client.get("/api/parked").json()
    assert parked["total"] == 1
    (item,) = parked["parked"]
    assert (item["kind"], item["id"]) == ("projection", "projection:contracts_by_customer")
    assert item["attempts"] >= 1 and item["error"]
    assert client.get("/api/health").json()["parked"] == 1

    assert client.post("/api/parked/nothing-such/retry").status_code == 404
    cure(runtime)
    answer = client.post(f"/api/parked/{item['id']}/retry")
    assert answer.status_code == 200, answer.text
    run(client)
    assert client.get("/api/parked").json() == {"parked": [], "total": 0}
    assert client.get("/api/contracts/ada-c9").json()["status"] == "active"


def test_skipping_parked_work_over_http(client: TestClient):
    register(client, "ada")
    runtime = runtime_of(client)
    poison(runtime)
    runtime.send(OpenContract(contract_id="ada-c9", customer_id="ada", title="Lease"))
    run(client)
    cure(runtime)
    answer = client.post("/api/parked/projection:contracts_by_customer/skip")
    assert answer.status_code == 200, answer.text
    assert client.post("/api/parked/projection:contracts_by_customer/skip").status_code == 404
    run(client)
    assert client.get("/api/parked").json()["total"] == 0
    assert client.get("/api/contracts/ada-c9").status_code == 404  # its event was skipped
    # (the aggregate has it: the read model alone missed it, as skipping says)


# -- health ----------------------------------------------------------------------------------


def test_health_shows_each_consumers_lag_and_the_queues(client: TestClient):
    register(client, "ada")
    runtime_of(client).send(OpenContract(contract_id="ada-c1", customer_id="ada", title="x"))
    health = client.get("/api/health").json()
    lags = {c["name"]: c["lag"] for c in health["consumers"]}
    assert health["head"] >= 2 and health["lag"] >= 1
    assert lags["router"] >= 1 and lags["projection:contracts_by_customer"] >= 1
    assert set(health["queues"]) == {"inbox", "commands_pending", "timers_due", "timers"}
    assert health["parked"] == 0 and health["clock"] == "virtual"

    run(client)
    health = client.get("/api/health").json()
    assert health["lag"] == 0
    assert all(c["checkpoint"] == health["head"] for c in health["consumers"])


# -- stuck work ------------------------------------------------------------------------------


def test_stuck_lists_contracts_pending_longer_than_asked_and_stalled_batches(
    client: TestClient,
):
    register(client, "ada", contracts=3)
    client.post("/api/customers/ada/rating", json={"rating": "BB"})
    run(client, advance_days=0.01)  # revoked: pending (a bare run would jump to the deadline)
    contracts = client.get("/api/customers/ada/contracts").json()["contracts"]
    assert {c["status"] for c in contracts} == {"pending"}
    stuck = client.get("/api/stuck", params={"pending_days": 4}).json()
    assert stuck["contracts"] == {"items": [], "next": None, "total": 0}

    run(client, advance_days=5)  # a reminder at day 3; the deadline (14 days) not yet
    stuck = client.get("/api/stuck", params={"pending_days": 4, "limit": 2}).json()
    assert stuck["contracts"]["total"] == 3
    assert [c["id"] for c in stuck["contracts"]["items"]] == ["ada-c0", "ada-c1"]
    assert stuck["contracts"]["next"] == "ada-c1"
    rest = client.get(
        "/api/stuck", params={"pending_days": 4, "limit": 2, "contracts_after": "ada-c1"}
    ).json()
    assert [c["id"] for c in rest["contracts"]["items"]] == ["ada-c2"]
    assert rest["contracts"]["next"] is None
    assert client.get("/api/stuck", params={"pending_days": 6}).json()["contracts"]["total"] == 0
    # the batch awaits the outcomes (signatures): items finish as contracts are decided
    batches = stuck["batches"]
    assert batches["total"] == len(batches["items"]) == 1
    assert batches["items"][0]["id"] == BATCH


def test_a_paused_batch_with_nothing_finished_is_stalled(client: TestClient):
    started_not_dispatched(client, contracts=2)
    assert client.post(f"/api/batches/{BATCH}/pause").status_code == 200
    run(client)
    assert client.get("/api/stuck", params={"stalled_minutes": 30}).json()["batches"]["total"] == 0
    run(client, advance_days=1)
    stalled = client.get("/api/stuck", params={"stalled_minutes": 30}).json()["batches"]
    assert [b["id"] for b in stalled["items"]] == [BATCH]
    assert stalled["items"][0]["paused"] is True
    assert stalled["items"][0]["last_finished_at"] is None


# -- batch control ---------------------------------------------------------------------------


def test_pause_stops_dispatch_and_resume_goes_on(client: TestClient):
    started_not_dispatched(client)
    paused = client.post(f"/api/batches/{BATCH}/pause", json={"reason": "mail is down"})
    assert paused.status_code == 200, paused.text
    assert (paused.json()["paused"], paused.json()["status"]) in {
        (True, "running"),
        (True, "enumerating"),
    }
    run(client)
    items = client.get(f"/api/batches/{BATCH}/items").json()
    assert items["total"] == 5
    assert {i["status"] for i in items["items"]} == {"pending"}, "a paused batch dispatched"
    assert all(i["dispatched_at"] is None for i in items["items"])

    resumed = client.post(f"/api/batches/{BATCH}/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    run(client)
    assert client.get(f"/api/batches/{BATCH}/items?status=pending").json()["total"] == 0
    dispatched = client.get(f"/api/batches/{BATCH}/items").json()["items"]
    assert all(i["dispatched_at"] is not None for i in dispatched)

    with open_audit(client) as events:
        assert [(e.type, e.data["by"], e.data["reason"]) for e in events] == [
            ("BatchPaused", "http", "mail is down"),
            ("BatchResumed", "http", ""),
        ]


class open_audit:
    """The control events of the batch's audit stream."""

    def __init__(self, client: TestClient) -> None:
        self.store = runtime_of(client).store

    def __enter__(self) -> list[Any]:
        return [e for e in self.store.read_all() if e.stream_id.endswith(BATCH)]

    def __exit__(self, *exc: object) -> None:
        return None


def test_throttle_sets_and_lifts_limits_and_refuses_a_bad_rate(client: TestClient):
    started_not_dispatched(client)
    url = f"/api/batches/{BATCH}/throttle"
    answer = client.post(url, json={"max_in_flight": 2, "rate": "100/hour", "reason": "slow"})
    assert answer.status_code == 200, answer.text
    batch = answer.json()
    assert batch["max_in_flight"] == 2
    assert batch["rate_limit"] == {"items": 100, "per_seconds": 3600.0, "text": "100/3600s"}
    assert client.get(f"/api/batches/{BATCH}").json()["rate_limit"]["items"] == 100

    lifted = client.post(url, json={"rate": None}).json()
    assert (lifted["rate_limit"], lifted["max_in_flight"]) == (None, 2)

    for bad in ({"rate": "fast"}, {"rate": "0/hour"}, {"max_in_flight": 0}, {}, {"reason": "x"}):
        refused = client.post(url, json=bad)
        assert refused.status_code == 422, bad
        assert "error" in refused.json()


def test_batch_control_refusals(client: TestClient):
    for action in ("pause", "resume", "cancel"):
        answer = client.post(f"/api/batches/credit-nobody-1/{action}")
        assert answer.status_code == 404 and "error" in answer.json()
    assert (
        client.post("/api/batches/credit-nobody-1/throttle", json={"rate": "1/s"}).status_code
        == 404
    )

    started_not_dispatched(client, contracts=1)
    cancelled = client.post(f"/api/batches/{BATCH}/cancel", json={"reason": "wrong rating"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelling"
    run(client)
    assert client.get(f"/api/batches/{BATCH}").json()["status"] == "cancelled"
    for action in ("pause", "resume"):
        refused = client.post(f"/api/batches/{BATCH}/{action}")
        assert refused.status_code == 409, refused.text
        assert "cancelled" in refused.json()["error"]
    refused = client.post(f"/api/batches/{BATCH}/throttle", json={"max_in_flight": 3})
    assert refused.status_code == 409


# -- lists with totals -----------------------------------------------------------------------


def test_every_list_pages_to_its_last_item_with_a_consistent_total(client: TestClient):
    for name in ("ann", "bob", "cy"):
        register(client, name)
    ids = register(client, "ada", contracts=5)
    customers, totals = pages(client, "/api/customers", "customers", 2)
    assert [c["id"] for c in customers] == ["ada", "ann", "bob", "cy"] and totals == {4}
    contracts, totals = pages(client, "/api/customers/ada/contracts", "contracts", 2)
    assert [c["id"] for c in contracts] == ids and totals == {5}
    active = client.get("/api/customers/ada/contracts", params={"status": "pending"}).json()
    assert active["total"] == 0

    client.post("/api/customers/ada/rating", json={"rating": "BB"})
    run(client)
    items, totals = pages(client, f"/api/batches/{BATCH}/items", "items", 2)
    assert [i["target_id"] for i in items] == ids and totals == {5}
    batches = client.get("/api/batches").json()
    assert batches["total"] == len(batches["batches"]) == 1 and batches["next"] is None
    for name in ("ann", "bob", "cy"):  # three more batches: the list pages newest first
        client.post(f"/api/customers/{name}/rating", json={"rating": "BB"})
        run(client)
    listed, totals = pages(client, "/api/batches", "batches", 3)
    assert totals == {4}
    assert [b["id"] for b in listed] == [f"credit-{n}-1" for n in ("cy", "bob", "ann", "ada")]
    assert client.get("/api/batches/credit-nobody-1/items").status_code == 404
    assert client.get(f"/api/batches/{BATCH}/items?status=bogus").status_code == 422
