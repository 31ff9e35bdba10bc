"""The dashboard of a server that needs a token, in real Chromium: it explains why it asks,
works once given the token, keeps it for the tab, and says so when the token is wrong.

The page runs under the server's Content-Security-Policy (no inline script or style): a
console error from a CSP violation fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.server import serving

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI, and says why
    expect = None

pytestmark = pytest.mark.browser

TOKEN = "a-test-token-of-32-characters-xx"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    env = {"CREDIT_CONTRACTS_TOKEN": TOKEN}
    log = tmp_path / "server.log"
    with serving(f"sqlite:///{tmp_path}/web.db", log, "--clock", "virtual", env=env) as base:
        with httpx.Client(base_url=base) as client:
            ada = {"id": "ada", "name": "Ada Lovelace", "rating": "AA"}
            assert client.post("/api/customers", json=ada).status_code == 401
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert client.post("/api/customers", json=ada, headers=auth).status_code == 201
        yield base


@pytest.fixture
def csp_errors(page: Any) -> list[str]:
    found: list[str] = []
    page.on(
        "console",
        lambda m: found.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return found


def register(page: Any, name: str) -> None:
    page.get_by_test_id("customer-name").fill(name)
    page.get_by_test_id("customer-rating").select_option("A")
    page.get_by_test_id("customer-submit").click()


def test_without_the_token_the_dashboard_reads_and_explains_why_it_cannot_change(
    page: Any, server: str, csp_errors: list[str]
):
    page.goto(server)
    expect(page.get_by_test_id("customer-row").filter(has_text="Ada Lovelace")).to_be_visible()
    expect(page.get_by_test_id("token-form")).to_be_visible()
    expect(page.get_by_test_id("token-why")).to_contain_text("needs its token for changes")

    register(page, "Grace Hopper")
    message = page.get_by_test_id("message")
    expect(message).to_contain_text("needs a token")
    expect(message).to_have_class("error")
    expect(page.get_by_test_id("customer-row")).to_have_count(1)
    assert csp_errors == []


def test_with_the_token_the_dashboard_changes_things_and_keeps_it_for_the_tab(
    page: Any, server: str, csp_errors: list[str]
):
    page.goto(server)
    page.get_by_test_id("token").fill(TOKEN)
    page.get_by_test_id("token-submit").click()
    expect(page.get_by_test_id("token-form")).to_be_hidden()

    register(page, "Grace Hopper")
    expect(page.get_by_test_id("customer-row").filter(has_text="Grace Hopper")).to_be_visible()

    page.reload()  # the token is kept for the tab: no question after a reload
    expect(page.get_by_test_id("customer-row")).to_have_count(2)
    expect(page.get_by_test_id("token-form")).to_be_hidden()
    register(page, "Alan Turing")
    expect(page.get_by_test_id("customer-row")).to_have_count(3)
    assert csp_errors == []


def test_a_wrong_token_is_forgotten_and_asked_for_again(page: Any, server: str):
    page.goto(server)
    page.get_by_test_id("token").fill("not-the-token-of-this-server")
    page.get_by_test_id("token-submit").click()
    register(page, "Grace Hopper")
    expect(page.get_by_test_id("message")).to_contain_text("not valid")
    expect(page.get_by_test_id("token-why")).to_contain_text("refused this token")
    expect(page.get_by_test_id("token-form")).to_be_visible()
    expect(page.get_by_test_id("customer-row")).to_have_count(1)
