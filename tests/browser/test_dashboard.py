"""The dashboard in real Chromium against the real server: a rating change seen through.

The server runs as `python -m credit_contracts.web` on a SQLite file, a virtual clock and
simulated customers, so the outcome of every contract is known in advance.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from credit_contracts.simulator import SimulationConfig, expected_outcome
from tests.browser.server import serving

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI, and says why
    expect = None

pytestmark = pytest.mark.browser

SIMULATION = SimulationConfig(seed=5, never_sign=0.4)
CONTRACTS = [f"ada-{n}" for n in range(1, 6)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    args = ("--clock", "virtual", "--simulate", "--seed", "5", "--never-sign", "0.4")
    with serving(f"sqlite:///{tmp_path}/web.db", tmp_path / "server.log", *args) as base:
        with httpx.Client(base_url=base) as client:
            ada = {"id": "ada", "name": "Ada Lovelace", "rating": "AA"}
            assert client.post("/api/customers", json=ada).status_code == 201
            for contract_id in CONTRACTS:
                contract = {"customer_id": "ada", "id": contract_id, "title": "Lease"}
                assert client.post("/api/contracts", json=contract).status_code == 201
        yield base


def customer_row(page: Any, name: str) -> Any:
    return page.get_by_test_id("customer-row").filter(has_text=name)


def test_a_rating_change_from_the_form_runs_to_completion(page: Any, server: str):
    page.goto(server)
    ada = customer_row(page, "Ada Lovelace")
    expect(ada.locator("[data-field=rating]")).to_have_text("AA")
    expect(ada.locator("[data-field=active]")).to_have_text("5")
    expect(page.get_by_test_id("clock")).to_contain_text("virtual clock · 2030-01-01")

    page.get_by_test_id("rating-customer").select_option("ada")
    page.get_by_test_id("rating-value").select_option("BB")
    page.get_by_test_id("rating-submit").click()
    expect(page.get_by_test_id("message")).to_contain_text("batch credit-ada-1")
    expect(ada.locator("[data-field=rating]")).to_have_text("BB")

    page.get_by_test_id("run").click()
    batch = page.locator('[data-testid=batch][data-id="credit-ada-1"]')
    expect(batch.get_by_test_id("batch-status")).to_have_text("completed")
    expect(batch.get_by_test_id("batch-progress")).to_have_attribute("aria-valuenow", "5")
    outcomes = [expected_outcome(SIMULATION, c) for c in CONTRACTS]
    reconfirmed = outcomes.count("reconfirmed")
    assert 0 < reconfirmed < 5, "the seed should give both outcomes"
    expect(batch.get_by_test_id("batch-counts")).to_contain_text(
        f"5 of 5 finished · {reconfirmed} re-confirmed · {5 - reconfirmed} terminated"
    )
    expect(ada.locator("[data-field=active]")).to_have_text(str(reconfirmed))
    expect(ada.locator("[data-field=terminated]")).to_have_text(str(5 - reconfirmed))
    expect(ada.locator("[data-field=pending]")).to_have_text("0")
    expect(ada.locator("[data-field=changes]")).to_have_text("1 / 1")
    expect(page.get_by_test_id("clock")).not_to_contain_text("2030-01-01")

    ada.click()
    terminated = CONTRACTS[outcomes.index("terminated")]
    row = page.locator(f'[data-testid=contract-row][data-id="{terminated}"]')
    expect(row).to_have_attribute("data-status", "terminated")
    row.click()
    timeline = page.get_by_test_id("timeline-entry")
    expect(timeline.first).to_contain_text("opened for customer ada")
    expect(timeline.nth(1)).to_contain_text("revoked by credit rating change 1")
    expect(timeline.last).to_contain_text("terminated: not re-signed within 14 days")
    expect(timeline).to_have_count(6)  # opened, revoked, asked, two reminders, terminated


def test_a_refused_change_shows_the_domain_reason(page: Any, server: str):
    page.goto(server)
    expect(customer_row(page, "Ada Lovelace")).to_be_visible()
    page.get_by_test_id("customer-name").fill("Grace Hopper")
    page.get_by_test_id("customer-rating").select_option("A")
    page.get_by_test_id("customer-submit").click()
    expect(customer_row(page, "Grace Hopper").locator("[data-field=rating]")).to_have_text("A")

    page.get_by_test_id("rating-customer").select_option("ada")
    page.get_by_test_id("rating-value").select_option("AA")
    page.get_by_test_id("rating-submit").click()
    message = page.get_by_test_id("message")
    expect(message).to_contain_text("already has credit rating AA: nothing to change")
    expect(message).to_have_class("error")
    expect(page.get_by_test_id("batch")).to_have_count(0)


def test_the_batches_list_pages_newest_first_to_the_oldest(page: Any, server: str):
    """Twelve rating changes: ten batches on the first page, two on the next, the oldest
    (`credit-ada-1`) last; the total is the same on both pages."""
    ratings = ["BB", "A"] * 6
    with httpx.Client(base_url=server) as client:
        for rating in ratings:
            answer = client.post("/api/customers/ada/rating", json={"rating": rating})
            assert answer.status_code == 202, answer.text
            assert client.post("/api/run", json={}).status_code == 200
    page.goto(server)
    page.get_by_test_id("batches-size").select_option("10")
    expect(page.get_by_test_id("batches-showing")).to_have_text("showing 1\N{EN DASH}10 of 12")
    cards = page.get_by_test_id("batch")
    expect(cards).to_have_count(10)
    expect(cards.first).to_have_attribute("data-id", "credit-ada-12")
    page.get_by_test_id("batches-next").click()
    expect(page.get_by_test_id("batches-showing")).to_have_text("showing 11\N{EN DASH}12 of 12")
    expect(cards).to_have_count(2)
    expect(cards.last).to_have_attribute("data-id", "credit-ada-1")
    expect(page.get_by_test_id("batches-next")).to_be_disabled()
    page.get_by_test_id("batches-prev").click()
    expect(page.get_by_test_id("batches-showing")).to_have_text("showing 1\N{EN DASH}10 of 12")
