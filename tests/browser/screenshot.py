"""Regenerate the README's picture of the dashboard: `python -m tests.browser.screenshot OUT.png`.

A small simulated scenario on a virtual clock: one rating change finished, one half way
through its fourteen days, and a contract's timeline open.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from tests.browser.server import launch, serving

CUSTOMERS = {"ada": ("Ada Lovelace", "AA", 6), "grace": ("Grace Hopper", "A", 5)}
CUSTOMERS["alan"] = ("Alan Turing", "BBB", 3)


def scenario(base: str) -> None:
    with httpx.Client(base_url=base) as client:
        for customer_id, (name, rating, contracts) in CUSTOMERS.items():
            client.post("/api/customers", json={"id": customer_id, "name": name, "rating": rating})
            for n in range(1, contracts + 1):
                contract = {"customer_id": customer_id, "id": f"{customer_id}-{n}"}
                client.post("/api/contracts", json={**contract, "title": f"Lease {n}"})
        client.post("/api/customers/ada/rating", json={"rating": "BB"})
        client.post("/api/run")
        client.post("/api/customers/grace/rating", json={"rating": "AA"})
        client.post("/api/run", json={"advance_days": 4})


def main(out: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/demo.db"
        args = ("--clock", "virtual", "--simulate", "--seed", "7", "--never-sign", "0.25")
        with serving(db, Path(tmp) / "server.log", *args) as base, sync_playwright() as p:
            scenario(base)
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(base)
            page.get_by_test_id("customer-row").filter(has_text="Grace").click()
            page.get_by_test_id("contract-row").filter(has_text="grace-2").click()
            page.get_by_test_id("timeline-entry").first.wait_for()
            page.wait_for_timeout(600)  # let the progress bars finish their transition
            page.screenshot(path=out, full_page=True)
            browser.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png")
