"""Who may call the API and what a request must look like: token, Host, Origin, JSON only,
body size, security headers, and idempotency keys bound to their request.

Every refused request is answered `{"error": ...}` with its status, and leaves the log as it
was: the refusal happens before any route, store or command sees the request.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from credit_contracts.web.security import (
    TOKEN_ENV,
    InsecureConfiguration,
    Security,
    load_token,
)
from procession import RecordedEvent, open_store
from tests.browser.server import serving

from .conftest import ClientFactory, TestClient

TOKEN = "s3cret-token-for-the-tests-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADA = {"id": "ada", "name": "Ada", "rating": "AA"}


def log(url: str) -> list[RecordedEvent]:
    with open_store(url) as store:
        return list(store.read_all())


@pytest.fixture
def guarded(make_client: ClientFactory) -> TestClient:
    return make_client(security=Security(token=TOKEN))


# -- the token ---------------------------------------------------------------------------------


def test_a_write_without_the_token_is_refused_and_stores_nothing(
    guarded: TestClient, store_url: str
):
    before = log(store_url)
    answer = guarded.post("/api/customers", json=ADA)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "needs a token" in answer.json()["error"]
    wrong = guarded.post("/api/customers", json=ADA, headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["error"]) == (
        401,
        "the token is not valid for this server",
    )
    basic = guarded.post("/api/customers", json=ADA, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    assert log(store_url) == before


def test_with_the_token_writes_work_and_reads_stay_open(guarded: TestClient):
    assert guarded.post("/api/customers", json=ADA, headers=AUTH).status_code == 201
    assert guarded.get("/api/customers/ada").json()["name"] == "Ada"
    assert guarded.get("/api/system").json()["auth"] == {"changes": "token", "reads": "open"}


def test_protected_reads_need_the_token_but_the_page_and_its_description_do_not(
    make_client: ClientFactory,
):
    client = make_client(security=Security(token=TOKEN, protect_reads=True))
    assert client.get("/api/customers").status_code == 401
    assert client.get("/api/customers", headers=AUTH).status_code == 200
    for open_path in ("/", "/static/dashboard.js", "/static/dashboard.css", "/openapi.json"):
        assert client.get(open_path).status_code == 200, open_path
    assert client.get("/api/system").json()["auth"] == {"changes": "token", "reads": "token"}


def test_the_openapi_document_declares_the_bearer_scheme_where_it_is_needed(
    guarded: TestClient,
):
    document = guarded.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    paths = document["paths"]
    assert paths["/api/customers"]["post"]["security"] == [{"bearer": []}]
    assert "401" in paths["/api/customers"]["post"]["responses"]
    assert "security" not in paths["/api/customers"]["get"]


def test_a_short_token_and_reads_protected_without_one_are_refused():
    with pytest.raises(InsecureConfiguration, match="at least 16"):
        Security(token="short")
    with pytest.raises(InsecureConfiguration, match="needs a token"):
        Security(protect_reads=True)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_a_non_loopback_address_is_not_served_without_a_token(host: str):
    with pytest.raises(InsecureConfiguration, match=f"refusing to serve {host}"):
        Security().check_bind(host)
    Security(token=TOKEN).check_bind(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_is_served_without_a_token(host: str):
    Security().check_bind(host)


def test_the_token_comes_from_a_private_file_or_the_environment(tmp_path: Path):
    assert load_token(None, {TOKEN_ENV: f" {TOKEN}\n"}) == TOKEN
    assert load_token(None, {}) is None
    file = tmp_path / "token"
    file.write_text(TOKEN + "\n")
    file.chmod(0o600)
    assert load_token(str(file), {TOKEN_ENV: "ignored-because-the-file-wins"}) == TOKEN
    file.chmod(0o644)
    with pytest.raises(InsecureConfiguration, match="chmod 600"):
        load_token(str(file))
    with pytest.raises(InsecureConfiguration, match="cannot read the token file"):
        load_token(str(tmp_path / "missing"))


# -- Host, Origin, JSON only, size -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({"Host": "evil.example"}, 400, "DNS rebinding"),
        ({"Host": "evil.example:8000"}, 400, "DNS rebinding"),
        ({"Origin": "http://evil.example"}, 403, "cross-origin"),
        ({"Origin": "null"}, 403, "cross-origin"),
        ({"Sec-Fetch-Site": "cross-site"}, 403, "cross-site"),
        ({"Sec-Fetch-Site": "same-site"}, 403, "cross-site"),
    ],
)
def test_requests_from_other_sites_are_refused(
    client: TestClient, store_url: str, headers: dict[str, str], status: int, words: str
):
    before = log(store_url)
    answer = client.post("/api/customers", json=ADA, headers=headers)
    assert answer.status_code == status and words in answer.json()["error"]
    assert log(store_url) == before


def test_a_rebound_host_cannot_even_read(client: TestClient):
    assert client.get("/api/customers", headers={"Host": "evil.example"}).status_code == 400


def test_the_servers_own_origin_and_allowed_hosts_are_served(make_client: ClientFactory):
    client = make_client(security=Security(allowed_hosts=("contracts.example.com",)))
    own = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/api/customers", json=ADA, headers=own).status_code == 201
    named = {"Host": "contracts.example.com", "Origin": "https://contracts.example.com"}
    answer = client.post("/api/customers", json={**ADA, "id": "bob"}, headers=named)
    assert answer.status_code == 201  # behind a TLS proxy the page is https, the request http


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"name=Eve&rating=A"),
        ("multipart/form-data; boundary=x", b"--x--"),
        ("text/plain", b'{"name": "Eve", "rating": "A"}'),
        ("text/plain", b""),
    ],
)
def test_writes_accept_json_only(
    client: TestClient, store_url: str, content_type: str, body: bytes
):
    before = log(store_url)
    answer = client.post("/api/customers", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 415
    assert "Content-Type: application/json" in answer.json()["error"]
    assert log(store_url) == before


def test_a_form_post_from_another_site_cannot_sign_a_contract(client: TestClient):
    """The finding of issue 9: a cross-site form signed a pending contract."""
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}
    answer = client.post("/api/contracts/any/sign", content=b"x=1", headers=form)
    assert answer.status_code == 403


def test_a_large_body_is_refused_before_it_is_read(make_client: ClientFactory, store_url: str):
    client = make_client(security=Security(max_body=1000))
    before = log(store_url)
    big = {**ADA, "name": "x" * 2000}
    answer = client.post("/api/customers", json=big)
    assert answer.status_code == 413 and "larger than 1,000 bytes" in answer.json()["error"]

    def chunks() -> Any:  # no Content-Length: counted while it arrives
        for _ in range(10):
            yield b" " * 500

    streamed = client.post(
        "/api/customers", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert log(store_url) == before


def test_every_answer_carries_the_security_headers(client: TestClient):
    for path in ("/", "/api/system", "/api/nothing-here"):
        headers = client.get(path).headers
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
    assert client.get("/api/system").headers["Cache-Control"] == "no-store"


def test_the_dashboard_has_no_inline_script_or_style(client: TestClient):
    page = client.get("/").text
    assert "<script>" not in page and "<style>" not in page and "style=" not in page
    assert client.get("/static/dashboard.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/nothing.js").status_code == 404


# -- idempotency keys ----------------------------------------------------------------------------


def test_a_key_reused_for_another_request_is_refused_and_executes_nothing(
    client: TestClient, store_url: str
):
    """The finding of issue 9: a key reused for another customer's rating dropped the change."""
    for customer in ("ada", "bob"):
        client.post("/api/customers", json={**ADA, "id": customer})
    key = {"Idempotency-Key": "change-1"}
    first = client.post("/api/customers/ada/rating", json={"rating": "B"}, headers=key)
    assert first.status_code == 202
    before = log(store_url)
    other = client.post("/api/customers/bob/rating", json={"rating": "B"}, headers=key)
    assert other.status_code == 422
    assert "already used for another request" in other.json()["error"]
    other_body = client.post("/api/customers/ada/rating", json={"rating": "C"}, headers=key)
    assert other_body.status_code == 422
    assert log(store_url) == before
    assert client.get("/api/customers/bob").json()["rating"] == "AA"


def test_a_retried_create_without_an_id_answers_the_first_result(
    client: TestClient, store_url: str
):
    """The finding of issue 9: the retry answered 404."""
    key = {"Idempotency-Key": "create-eve"}
    body = {"name": "Eve", "rating": "A"}
    first = client.post("/api/customers", json=body, headers=key)
    again = client.post("/api/customers", json={"rating": "A", "name": "Eve"}, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert [e.type for e in log(store_url)].count("CustomerRegistered") == 1

    contract = {"customer_id": first.json()["id"], "title": "Lease"}
    key = {"Idempotency-Key": "open-1"}
    opened = [client.post("/api/contracts", json=contract, headers=key) for _ in range(3)]
    assert {o.status_code for o in opened} == {201}
    assert len({o.json()["id"] for o in opened}) == 1
    assert [e.type for e in log(store_url)].count("ContractOpened") == 1


def test_a_refusal_is_replayed_too(client: TestClient):
    key = {"Idempotency-Key": "sign-ghost"}
    first = client.post("/api/contracts/ghost/sign", headers=key)
    assert first.status_code == 404
    client.post("/api/customers", json=ADA)
    client.post("/api/contracts", json={"customer_id": "ada", "id": "ghost"})
    again = client.post("/api/contracts/ghost/sign", headers=key)
    assert (again.status_code, again.json()) == (404, first.json())


def test_an_invalid_request_does_not_use_up_its_key(client: TestClient):
    key = {"Idempotency-Key": "k"}
    assert client.post("/api/customers", json={"name": "Eve"}, headers=key).status_code == 422
    assert client.post("/api/customers", json=ADA, headers=key).status_code == 201


def test_concurrent_repeats_execute_once_and_get_one_answer(store_url: str, tmp_path: Path):
    """Twelve clients send the same request with the same key at once, to the real server."""
    with serving(store_url, tmp_path / "server.log", "--clock", "virtual") as base:
        with httpx.Client(base_url=base) as client:
            assert client.post("/api/customers", json=ADA).status_code == 201
        answers: list[httpx.Response] = []
        start = threading.Barrier(12)

        def send() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                start.wait()
                answers.append(
                    client.post(
                        "/api/customers/ada/rating",
                        json={"rating": "BB"},
                        headers={"Idempotency-Key": "concurrent"},
                    )
                )

        threads = [threading.Thread(target=send) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [a.status_code for a in answers] == [202] * 12
    assert len({a.text for a in answers}) == 1
    changes = [e for e in log(store_url) if e.type == "CustomerCreditRatingChanged"]
    assert len(changes) == 1


def test_the_server_refuses_to_start_on_a_public_address_without_a_token(tmp_path: Path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "credit_contracts.web",
            "--db",
            f"sqlite:///{tmp_path}/x.db",
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to serve 0.0.0.0 without a token" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.db").exists()
