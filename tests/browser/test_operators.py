"""The operator's views in real Chromium against the real server on a real SQLite file:
parked work retried (a projection, and a process step whose instance state no longer
decodes), the server's worker listed as live, stuck contracts found, a 2,700-contract list
paged to its end, a batch paused and resumed from the dashboard, its items by status and its
supersede links.

Stores are prepared in this process (tests/browser/stores.py) before the server opens them;
what the dashboard did is checked in the page and, for dispatching, through the API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import stores
from tests.browser.server import serving

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI, and says why
    expect = None

pytestmark = pytest.mark.browser

BATCH = "credit-ada-1"
VIRTUAL = ("--clock", "virtual")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "web.db"


def served(db: Path, *options: str) -> Any:
    return serving(stores.url_of(db), db.with_suffix(".log"), *options)


def showing(first: int, last: int, total: int) -> str:
    """A list's place in its total, as the dashboard words it (an en dash between)."""
    return f"showing {first:,}\N{EN DASH}{last:,} of {total:,}"


@pytest.fixture
def csp_errors(page: Any) -> list[str]:
    """Console errors from the Content-Security-Policy (no inline script or style)."""
    found: list[str] = []
    page.on(
        "console",
        lambda m: found.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return found


# -- parked work -----------------------------------------------------------------------------


def test_a_parked_projection_is_listed_and_gone_after_retry(
    page: Any, db: Path, csp_errors: list[str]
):
    stores.poisoned(db)
    with served(db, *VIRTUAL) as base:
        page.goto(f"{base}/#parked")
        rows = page.get_by_test_id("parked-row")
        expect(rows).to_have_count(1)
        row = rows.first
        expect(row).to_have_attribute("data-kind", "projection")
        expect(row.locator("[data-field=id]")).to_have_text("projection:contracts_by_customer")
        expect(row.locator("[data-field=error]")).to_contain_text("UNIQUE constraint failed")
        assert int(row.locator("[data-field=attempts]").inner_text()) >= 1
        expect(page.get_by_test_id("parked-summary")).to_contain_text("1 parked item")
        expect(page.get_by_test_id("nav-parked-count")).to_have_text("1")

        stores.cure(db)
        row.get_by_test_id("parked-retry").click()
        expect(page.get_by_test_id("notice")).to_contain_text(
            "projection:contracts_by_customer is back to work"
        )
        expect(page.get_by_test_id("parked-row")).to_have_count(0)
        expect(page.get_by_test_id("parked-empty")).to_have_text("Nothing parked.")
        expect(page.get_by_test_id("nav-parked-count")).to_have_text("")

        page.get_by_test_id("run").click()
        expect(page.get_by_test_id("notice")).to_contain_text("Ran until idle")
        expect(page.get_by_test_id("parked-empty")).to_be_visible()
        with httpx.Client(base_url=base) as client:
            assert client.get("/api/parked").json()["total"] == 0
            assert client.get("/api/contracts/ada-c9").json()["status"] == "active"
        assert csp_errors == []


CONFIRMATION = "ContractConfirmationProcessor"


def contract_status(client: httpx.Client, contract_id: str) -> str:
    return str(client.get(f"/api/contracts/{contract_id}").json()["status"])


def test_a_parked_process_step_is_listed_and_its_process_goes_on_after_retry(
    page: Any, db: Path, csp_errors: list[str]
):
    """A process step that cannot run: the stored state of ada-c0's confirmation no longer
    decodes, so the step her re-signature starts is parked at once with the error. The
    server's worker runs it; once the state is put back, Retry sends it back to work and the
    contract is re-confirmed. ada-c1's confirmation, signed at the same time, never waits."""
    stores.large_batch(db, 2)  # ada-c0 and ada-c1 revoked, each awaiting its re-signature
    saved = stores.process_state(db, CONFIRMATION, "ada-c0")
    stores.set_process_state(db, CONFIRMATION, "ada-c0", stores.BROKEN_STATE)
    with served(db, *VIRTUAL, "--worker") as base, httpx.Client(base_url=base) as client:
        for contract_id in ("ada-c0", "ada-c1"):
            assert client.post(f"/api/contracts/{contract_id}/sign").status_code == 200
        wait_for(lambda: contract_status(client, "ada-c1") == "active")
        wait_for(lambda: client.get("/api/parked").json()["total"] == 1)
        [parked] = client.get("/api/parked").json()["parked"]
        assert parked["kind"] == "delivery" and parked["id"].isdigit()  # its inbox row
        assert contract_status(client, "ada-c0") == "resigned"  # signed, not re-confirmed

        page.goto(f"{base}/#parked")
        rows = page.get_by_test_id("parked-row")
        expect(rows).to_have_count(1)
        row = rows.first
        expect(row).to_have_attribute("data-kind", "delivery")
        expect(row).to_have_attribute("data-id", parked["id"])
        expect(row.locator("[data-field=id]")).to_have_text(parked["id"])
        where = f"{CONFIRMATION} ada-c0 \N{MIDDLE DOT} ContractResigned"
        expect(row.locator("[data-field=where]")).to_have_text(where)
        expect(row.locator("[data-field=error]")).to_contain_text(
            f"cannot load the state of {CONFIRMATION} ada-c0: DecodeError"
        )
        expect(row.locator("[data-field=attempts]")).to_have_text("1")
        expect(page.get_by_test_id("parked-summary")).to_contain_text("1 parked item")
        expect(page.get_by_test_id("nav-parked-count")).to_have_text("1")

        stores.set_process_state(db, CONFIRMATION, "ada-c0", saved)  # the operator's fix
        row.get_by_test_id("parked-retry").click()
        expect(page.get_by_test_id("notice")).to_contain_text(
            f"{parked['id']} ({where}) is back to work"  # what it is, not only a row number
        )
        expect(page.get_by_test_id("parked-row")).to_have_count(0)
        expect(page.get_by_test_id("parked-empty")).to_have_text("Nothing parked.")
        expect(page.get_by_test_id("nav-parked-count")).to_have_text("")

        wait_for(lambda: contract_status(client, "ada-c0") == "active")
        assert client.get("/api/parked").json()["total"] == 0
        timeline = client.get("/api/contracts/ada-c0").json()["timeline"]
        assert "re-confirmed: active again" in [entry["summary"] for entry in timeline]
        assert client.get(f"/api/batches/{BATCH}").json()["status"] == "completed"
        assert csp_errors == []


def test_health_shows_the_head_each_consumers_lag_and_the_queues(page: Any, db: Path):
    stores.poisoned(db)
    with served(db, *VIRTUAL) as base:
        health = httpx.get(f"{base}/api/health").json()
        page.goto(f"{base}/#health")
        expect(page.get_by_test_id("health-head")).to_have_text(str(health["head"]))
        expect(page.get_by_test_id("health-parked")).to_have_text("1")
        consumers = page.get_by_test_id("consumer-row")
        expect(consumers).to_have_count(len(health["consumers"]))
        stalled = consumers.filter(has_text="projection:contracts_by_customer")
        expect(stalled.locator("[data-field=lag]")).to_have_text("1")  # the event it parked on
        expect(page.get_by_test_id("health-inbox")).to_have_text("0")
        expect(page.get_by_test_id("health-timers-due")).to_have_text("0")
        expect(page.get_by_test_id("nav-health")).to_have_attribute("aria-current", "page")
        expect(page.get_by_test_id("worker-row")).to_have_count(0)  # no worker in this server
        expect(page.get_by_test_id("health-workers")).to_contain_text(
            "No worker has reported to the store."
        )


def test_health_lists_the_servers_worker_as_live(page: Any, db: Path):
    """`--worker` runs a worker thread in the server: it reports to the store's workers table
    (a heartbeat) as every worker does, so the Health view lists it, alive."""
    stores.large_batch(db, 1)
    with served(db, *VIRTUAL, "--worker") as base, httpx.Client(base_url=base) as client:
        wait_for(lambda: len(client.get("/api/health").json()["workers"]) == 1)
        [worker] = client.get("/api/health").json()["workers"]
        assert worker["alive"] is True and worker["stopped_at"] is None
        page.goto(f"{base}/#health")
        rows = page.get_by_test_id("worker-row")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-id", worker["worker_id"])
        expect(rows.first).to_have_attribute("data-alive", "true")
        expect(rows.first).to_contain_text(str(worker["pid"]))
        expect(rows.first).to_contain_text("alive")


# -- stuck work ------------------------------------------------------------------------------


@pytest.fixture
def five_days_pending(db: Path) -> Iterator[str]:
    """Three contracts revoked five days ago (virtual time) and not re-signed."""
    with served(db, *VIRTUAL) as base, httpx.Client(base_url=base) as client:
        ada = {"id": "ada", "name": "Ada Lovelace", "rating": "AA"}
        assert client.post("/api/customers", json=ada).status_code == 201
        for n in range(3):
            contract = {"customer_id": "ada", "id": f"ada-c{n}", "title": "Lease"}
            assert client.post("/api/contracts", json=contract).status_code == 201
        assert client.post("/api/customers/ada/rating", json={"rating": "BB"}).status_code == 202
        assert client.post("/api/run", json={"advance_days": 0.01}).status_code == 200
        assert client.post("/api/run", json={"advance_days": 5}).status_code == 200
        yield base


def stuck_filter(page: Any, days: str, minutes: str) -> None:
    page.get_by_test_id("stuck-days").fill(days)
    page.get_by_test_id("stuck-minutes").fill(minutes)
    page.get_by_test_id("stuck-submit").click()


def test_contracts_pending_longer_than_n_days_are_listed_and_link_to_their_timeline(
    page: Any, five_days_pending: str
):
    page.goto(f"{five_days_pending}/#stuck")
    stuck_filter(page, "4", "30")
    rows = page.get_by_test_id("stuck-contract-row")
    expect(page.locator("#stuck-contracts-title")).to_have_text(
        "Contracts pending longer than 4 days: 3"
    )
    expect(rows).to_have_count(3)
    expect(page.get_by_test_id("stuck-contracts-showing")).to_have_text(showing(1, 3, 3))
    batches = page.get_by_test_id("stuck-batch-row")
    expect(batches).to_have_count(1)
    expect(batches.first).to_have_attribute("data-id", BATCH)

    stuck_filter(page, "6", "30")
    expect(page.locator("#stuck-contracts-title")).to_have_text(
        "Contracts pending longer than 6 days: 0"
    )
    expect(rows).to_have_count(0)
    expect(page.get_by_test_id("stuck-contracts")).to_contain_text("No contract has been pending")

    stuck_filter(page, "4", "30")
    expect(rows).to_have_count(3)
    rows.filter(has_text="ada-c1").get_by_test_id("stuck-contract-link").click()
    expect(page.get_by_test_id("timeline-panel")).to_be_visible()
    expect(page.locator("#timeline-title")).to_have_text("Timeline of ada-c1 (pending)")
    expect(page.get_by_test_id("timeline-entry").nth(1)).to_contain_text("revoked")
    expect(page.get_by_test_id("nav-overview")).to_have_attribute("aria-current", "page")


def test_a_batch_shows_its_items_by_status_and_its_supersede_links(
    page: Any, five_days_pending: str
):
    with httpx.Client(base_url=five_days_pending) as client:
        client.post("/api/contracts/ada-c0/sign")
        assert client.post("/api/run", json={"advance_days": 0.01}).status_code == 200
        answer = client.post("/api/customers/ada/rating", json={"rating": "B"})
        assert answer.status_code == 202
        assert client.post("/api/run", json={"advance_days": 0.01}).status_code == 200
    page.goto(f"{five_days_pending}/#batch/{BATCH}")
    expect(page.get_by_test_id("batch-title")).to_contain_text(BATCH)
    expect(page.get_by_test_id("items-showing")).to_have_text(showing(1, 3, 3))
    page.get_by_test_id("items-status").select_option("done")
    expect(page.get_by_test_id("item-row")).to_have_count(1)
    expect(page.get_by_test_id("item-row").first).to_have_attribute("data-id", "ada-c0")
    expect(page.get_by_test_id("items-showing")).to_have_text(showing(1, 1, 1))
    page.get_by_test_id("items-status").select_option("pending")
    expect(page.get_by_test_id("items-showing")).to_have_text("none")

    page.get_by_test_id("superseded-by").click()
    expect(page.get_by_test_id("batch-title")).to_contain_text("credit-ada-2")
    expect(page.get_by_test_id("supersedes")).to_have_text(BATCH)
    page.get_by_test_id("supersedes").click()
    expect(page.get_by_test_id("batch-title")).to_contain_text(BATCH)


# -- paging ----------------------------------------------------------------------------------

CONTRACTS = 2700


def test_paging_reaches_the_last_contract_of_a_2700_contract_batch(
    page: Any, db: Path, csp_errors: list[str]
):
    ids = stores.large_batch(db, CONTRACTS)
    with served(db, *VIRTUAL) as base:
        page.goto(base)
        page.get_by_test_id("customer-row").filter(has_text="Ada Lovelace").click()
        place = page.get_by_test_id("contracts-showing")
        expect(place).to_have_text(showing(1, 100, CONTRACTS))
        page.get_by_test_id("contracts-size").select_option("500")
        expect(place).to_have_text(showing(1, 500, CONTRACTS))
        expect(page.get_by_test_id("contracts-prev")).to_be_disabled()
        for first, last in [(501, 1000), (1001, 1500), (1501, 2000), (2001, 2500)]:
            page.get_by_test_id("contracts-next").click()
            expect(place).to_have_text(showing(first, last, CONTRACTS))
        page.get_by_test_id("contracts-next").click()
        expect(place).to_have_text(showing(2501, 2700, CONTRACTS))
        rows = page.get_by_test_id("contract-row")
        expect(rows).to_have_count(200)
        expect(rows.last).to_have_attribute("data-id", ids[-1])
        expect(page.get_by_test_id("contracts-next")).to_be_disabled()
        page.get_by_test_id("contracts-prev").click()
        expect(place).to_have_text(showing(2001, 2500, CONTRACTS))

        page.goto(f"{base}/#batch/{BATCH}")
        items = page.get_by_test_id("items-showing")
        expect(items).to_have_text(showing(1, 100, CONTRACTS))
        page.get_by_test_id("items-size").select_option("500")
        for _ in range(5):
            page.get_by_test_id("items-next").click()
        expect(items).to_have_text(showing(2501, 2700, CONTRACTS))
        expect(page.get_by_test_id("item-row").last).to_have_attribute("data-id", ids[-1])
        assert csp_errors == []


# -- batch control ---------------------------------------------------------------------------


def dispatched(client: httpx.Client) -> int:
    """Items dispatched so far: those in flight and those finished."""
    batch = client.get(f"/api/batches/{BATCH}").json()
    return int(batch["in_flight"] + batch["finished"])


def wait_for(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.1)


def test_a_batch_paused_from_the_dashboard_stops_dispatching_and_resumes(page: Any, db: Path):
    stores.throttled_batch(db, 30, BATCH, rate="2/s")
    with served(db, "--worker") as base, httpx.Client(base_url=base) as client:
        page.goto(f"{base}/#batch/{BATCH}")
        expect(page.get_by_test_id("batch-settings")).to_contain_text("rate limit 2/1s")
        wait_for(lambda: dispatched(client) >= 4)  # dispatching, two a second

        page.get_by_test_id("batch-reason").fill("mail provider is down")
        page.get_by_test_id("batch-pause").click()
        expect(page.get_by_test_id("batch-paused")).to_be_visible()
        expect(page.get_by_test_id("batch-resume")).to_be_enabled()
        assert client.get(f"/api/batches/{BATCH}").json()["paused"] is True
        held = dispatched(client)
        time.sleep(2.5)  # five items' worth at the rate in force
        assert dispatched(client) == held < 30, "a paused batch dispatched"

        page.get_by_test_id("batch-resume").click()
        expect(page.get_by_test_id("batch-paused")).to_be_hidden()
        wait_for(lambda: dispatched(client) > held)

        page.get_by_test_id("throttle-rate").fill("100/s")
        page.get_by_test_id("throttle-max").fill("50")
        page.get_by_test_id("throttle-submit").click()
        expect(page.get_by_test_id("batch-settings")).to_have_text(
            "max in flight 50 · rate limit 100/1s"
        )
        wait_for(lambda: dispatched(client) == 30)
        expect(page.get_by_test_id("batch-view-counts")).to_contain_text("30 in flight")
