"""A catalogue of bad HTTP requests: each gets its status, one clear error, and changes nothing.

Every case runs on both backends against a fresh store holding one customer (`ada`, rating AA)
with one active contract (`ada-c0`). It asserts the status, a JSON body whose `error` is a
string containing the given words (and no control or bidirectional character: refused input
is quoted escaped), no traceback, an `Allow` header on a 405, and the log unchanged by the
request. (tests/web/test_api.py and test_security.py hold the first examples of most kinds;
this catalogue stands on its own, with other values.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from credit_contracts import validation
from credit_contracts.web.security import Security
from procession import RecordedEvent, open_store

from .conftest import ClientFactory, TestClient

TOKEN = "catalogue-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
NO_BODY = object()
RULES = "control, bidirectional and invisible formatting characters are not allowed"
OSC_LINK = "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07"
"""A terminal hyperlink (OSC 8) whose text hides where it leads."""
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass(frozen=True)
class Bad:
    """One bad request: what is sent, on which server, and what must come back."""

    method: str
    path: str
    body: Any
    """A JSON value (sent as JSON), bytes (sent as they are, declared JSON), or NO_BODY."""
    status: int
    words: tuple[str, ...]
    """What the error must say."""
    headers: dict[str, str] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    """Options of `create_app` (security, clock)."""
    before: tuple[tuple[str, str, Any, dict[str, str]], ...] = ()
    """Requests sent first, which must succeed: method, path, body, headers."""
    allow: str | None = None
    """The `Allow` header a 405 must carry."""


def bad(
    case_id: str, method: str, path: str, body: Any, status: int, *words: str, **more: Any
) -> Any:
    return pytest.param(Bad(method, path, body, status, words, **more), id=case_id)


def raw(text: str) -> bytes:
    return text.encode()


CUSTOMERS, CONTRACTS, RUN = "/api/customers", "/api/contracts", "/api/run"
RATING, SIGN = "/api/customers/ada/rating", "/api/contracts/ada-c0/sign"
EVE = {"name": "Eve", "rating": "A"}
GUARDED = {"security": Security(token=TOKEN)}
KEY_USED = (("POST", RATING, {"rating": "B"}, {"Idempotency-Key": "k-1"}),)
"""Ada's rating changed to B with the Idempotency-Key k-1."""

CATALOGUE = [
    # -- malformed JSON, bodies that are not objects
    bad("json-no-comma", "POST", CUSTOMERS, raw('{"name": "Eve" "rating": "A"}'), 422, "delimiter"),
    bad("json-quotes", "POST", CONTRACTS, raw("{'customer_id': 'ada'}"), 422, "double quotes"),
    bad("json-trailing-comma", "POST", RATING, raw('{"rating": "B",}'), 422, "malformed JSON"),
    bad("json-empty", "POST", CUSTOMERS, raw(""), 422, "body: Field required"),
    bad("json-string", "POST", CONTRACTS, raw('"ada"'), 422, "the body must be a JSON object"),
    bad("json-null", "POST", RATING, raw("null"), 422, "the body must be a JSON object"),
    # -- wrong types, unknown fields
    bad("type-name-null", "POST", CUSTOMERS, {**EVE, "name": None}, 422, "name: Input should be"),
    bad("type-id-number", "POST", CUSTOMERS, {**EVE, "id": 12}, 422, "id: Input should be a"),
    bad("type-id-list", "POST", CONTRACTS, {"customer_id": ["ada"]}, 422, "customer_id: Input"),
    bad("type-days-bool", "POST", RUN, {"advance_days": True}, 422, "advance_days: Input should"),
    bad("unknown-titel", "POST", CONTRACTS, {"customer_id": "ada", "titel": "x"}, 422, "titel: "),
    bad("unknown-why", "POST", RATING, {"rating": "B", "why": "late"}, 422, "why: unknown field"),
    # -- bad ids in bodies
    bad("id-space", "POST", CONTRACTS, {"customer_id": "ada", "id": "c 1"}, 422, "bad id 'c 1'"),
    bad("id-empty", "POST", CUSTOMERS, {**EVE, "id": ""}, 422, "id: the id is empty"),
    bad("id-too-long", "POST", CUSTOMERS, {**EVE, "id": "e" * 129}, 422, "129 characters: at most"),
    bad("id-unicode", "POST", CONTRACTS, {"customer_id": "adá"}, 422, "customer_id: bad id 'adá'"),
    bad("id-dots", "POST", CONTRACTS, {"customer_id": "ada", "id": "../etc"}, 422, "bad id '../"),
    bad("id-nul", "POST", CUSTOMERS, {**EVE, "id": "e\x00"}, 422, "bad id 'e\\x00'"),
    # -- bad ids in paths
    bad("path-space", "GET", "/api/customers/a%20b", NO_BODY, 422, "path parameter customer_id"),
    bad("path-long", "POST", f"{CUSTOMERS}/{'a' * 129}/rating", {"rating": "B"}, 422, "at most"),
    bad("path-unicode", "GET", "/api/contracts/%C3%A9t%C3%A9", NO_BODY, 422, "bad id 'été'"),
    bad("path-nul", "POST", "/api/contracts/c%00/sign", NO_BODY, 422, "bad id 'c\\x00'"),
    bad("path-dot-dot", "GET", "/api/contracts/%2E%2E", NO_BODY, 422, "bad id '..'"),
    bad("path-slashes", "GET", "/api/customers/..%2F..%2Fetc", NO_BODY, 404, "no such resource"),
    bad("path-empty", "POST", "/api/customers//rating", {"rating": "B"}, 404, "no such resource"),
    bad("path-backslash", "GET", "/api/batches/credit-..%5Cwin", NO_BODY, 422, "bad batch id"),
    # -- names and titles
    bad("name-long", "POST", CUSTOMERS, {**EVE, "name": "n" * 201}, 422, "201 characters long"),
    bad("title-long", "POST", CONTRACTS, {"customer_id": "ada", "title": "t" * 201}, 422, "title"),
    bad("name-blank", "POST", CUSTOMERS, {**EVE, "name": "\u3000\u00a0 "}, 422, "name is empty"),
    bad("name-ansi", "POST", CUSTOMERS, {**EVE, "name": "\x1b[31mRed"}, 422, "U+001B", RULES),
    bad("title-osc-8", "POST", CONTRACTS, {"customer_id": "ada", "title": OSC_LINK}, 422, "U+001B"),
    bad("name-rlo", "POST", CUSTOMERS, {**EVE, "name": "abc\u202egnp.exe"}, 422, "U+202E (RIGHT"),
    bad("title-rli", "POST", CONTRACTS, {"customer_id": "ada", "title": "a\u2067b"}, 422, "U+2067"),
    bad("name-nul", "POST", CUSTOMERS, {**EVE, "name": "Ev\x00e"}, 422, "U+0000", "character 3"),
    bad("name-newline", "POST", CUSTOMERS, {**EVE, "name": "Eve\nAdm"}, 422, "U+000A (LINE FEED)"),
    # -- ratings
    bad("rating-aaaa", "POST", CUSTOMERS, {**EVE, "rating": "AAAA"}, 422, "rating 'AAAA': use"),
    bad("rating-plus", "POST", RATING, {"rating": "A+"}, 422, "unknown credit rating 'A+'"),
    bad("rating-empty", "POST", RATING, {"rating": ""}, 422, "unknown credit rating ''"),
    # -- unknown customers, contracts, batches
    bad("no-customer", "GET", "/api/customers/ghost-1", NO_BODY, 404, "customer ghost-1 does not"),
    bad("no-customer-rating", "POST", "/api/customers/gh/rating", {"rating": "B"}, 404, "gh does"),
    bad("no-customer-open", "POST", CONTRACTS, {"customer_id": "g3"}, 404, "customer g3 does not"),
    bad("no-contract-sign", "POST", "/api/contracts/g-c/sign", NO_BODY, 404, "contract g-c does"),
    bad("no-batch", "GET", "/api/batches/credit-ada-7", NO_BODY, 404, "batch credit-ada-7 does"),
    # -- domain conflicts
    bad("same-rating-aa", "POST", RATING, {"rating": " aa "}, 409, "already has credit rating AA"),
    bad("sign-active", "POST", SIGN, NO_BODY, 409, "only a pending contract can be signed"),
    bad("register-again", "POST", CUSTOMERS, {**EVE, "id": "ada"}, 409, "already registered"),
    bad("open-again", "POST", CONTRACTS, {"customer_id": "ada", "id": "ada-c0"}, 409, "exists"),
    # -- wrong methods, unknown paths
    bad("put-customer", "PUT", "/api/customers/ada", NO_BODY, 405, "PUT is not", allow="GET"),
    bad("patch-customers", "PATCH", CUSTOMERS, NO_BODY, 405, "PATCH is not", allow="GET, POST"),
    bad("get-run", "GET", RUN, NO_BODY, 405, "GET is not allowed on /api/run", allow="POST"),
    bad("delete-contract", "DELETE", "/api/contracts/c", NO_BODY, 405, "DELETE is", allow="GET"),
    bad("path-v2", "GET", "/api/v2/customers", NO_BODY, 404, "no such resource: GET /api/v2/"),
    bad("path-singular", "POST", "/api/customer", EVE, 404, "no such resource: POST /api/customer"),
    # -- refused by the middleware
    bad("form", "POST", CONTRACTS, b"customer_id=ada", 415, "x-www-form-urlencoded", headers=FORM),
    bad(
        "text-plain",
        "POST",
        RATING,
        b'{"rating": "B"}',
        415,
        "(this request's: text/plain)",
        headers={"Content-Type": "text/plain"},
    ),
    bad("too-large", "POST", CUSTOMERS, b" " * 70_000, 413, "larger than 65,536 bytes"),
    bad(
        "host-lookalike",
        "GET",
        CUSTOMERS,
        NO_BODY,
        400,
        "'localhost.evil.example' (DNS",
        headers={"Host": "localhost.evil.example"},
    ),
    bad("host-ip", "POST", RUN, NO_BODY, 400, "DNS rebinding", headers={"Host": "10.0.0.7:80"}),
    bad(
        "length-ten",
        "GET",
        CUSTOMERS,
        NO_BODY,
        400,
        "Content-Length",
        headers={"Content-Length": "ten"},
    ),
    bad(
        "origin-port",
        "POST",
        CUSTOMERS,
        EVE,
        403,
        "cross-origin",
        headers={"Origin": "http://localhost:8000"},
    ),
    bad(
        "origin-site",
        "POST",
        SIGN,
        NO_BODY,
        403,
        "a page of https://evil.example",
        headers={"Origin": "https://evil.example"},
    ),
    bad("token-missing", "POST", RUN, NO_BODY, 401, "needs a token", server=GUARDED),
    bad(
        "token-wrong",
        "POST",
        RATING,
        {"rating": "B"},
        401,
        "the token is not valid",
        headers={"Authorization": f"Bearer {TOKEN[:-1]}"},
        server=GUARDED,
    ),
    bad(
        "token-scheme",
        "POST",
        SIGN,
        NO_BODY,
        401,
        "the token is not valid",
        headers={"Authorization": f"Token {TOKEN}"},
        server=GUARDED,
    ),
    bad(
        "token-read",
        "GET",
        "/api/customers/ada",
        NO_BODY,
        401,
        "needs a token",
        server={"security": Security(token=TOKEN, protect_reads=True)},
    ),
    # -- idempotency keys
    bad(
        "key-other-body",
        "POST",
        RATING,
        {"rating": "C"},
        422,
        "'k-1' was already used",
        headers={"Idempotency-Key": "k-1"},
        before=KEY_USED,
    ),
    bad(
        "key-other-path",
        "POST",
        SIGN,
        NO_BODY,
        422,
        "(POST /api/customers/ada/rating, with",
        headers={"Idempotency-Key": "k-1"},
        before=KEY_USED,
    ),
    bad(
        "key-space",
        "POST",
        CUSTOMERS,
        EVE,
        422,
        "header parameter idempotency-key",
        headers={"Idempotency-Key": "my key"},
    ),
    # -- query parameters
    bad("limit-zero", "GET", "/api/batches?limit=0", NO_BODY, 422, "greater than or equal to 1"),
    bad("limit-abc", "GET", f"{CUSTOMERS}?limit=abc", NO_BODY, 422, "limit: Input should be a"),
    bad("limit-501", "GET", "/api/customers/ada/contracts?limit=501", NO_BODY, 422, "limit"),
    bad("status-caps", "GET", "/api/customers/ada/contracts?status=ACTIVE", NO_BODY, 422, "status"),
    # -- running
    bad(
        "days-system-clock",
        "POST",
        RUN,
        {"advance_days": 0.5},
        409,
        "needs a virtual clock",
        server={"clock": "system"},
    ),
    bad("days-367", "POST", RUN, {"advance_days": 367}, 422, "less than or equal to 366"),
    bad(
        "days-zero", "POST", RUN, {"advance_days": 0}, 422, "advance_days: Input should be greater"
    ),
    bad("days-overflow", "POST", RUN, raw('{"advance_days": 1e400}'), 422, "or equal to 366"),
]


def log(url: str) -> list[RecordedEvent]:
    with open_store(url) as store:
        return list(store.read_all())


def send(client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    if body is NO_BODY:
        return client.request(method, path, headers=headers)
    if isinstance(body, bytes):
        return client.request(method, path, content=body, headers={**JSON, **headers})
    return client.request(method, path, json=body, headers=headers)


def seed(client: TestClient) -> None:
    """Ada (AA) and her active contract ada-c0 (the token is ignored where none is set)."""
    ada = {"id": "ada", "name": "Ada", "rating": "AA"}
    assert client.post("/api/customers", json=ada, headers=AUTH).status_code == 201
    lease = {"customer_id": "ada", "id": "ada-c0", "title": "Lease"}
    assert client.post("/api/contracts", json=lease, headers=AUTH).status_code == 201


def test_the_catalogue_holds_every_kind_of_bad_request():
    assert len(CATALOGUE) >= 40
    statuses = {400, 401, 403, 404, 405, 409, 413, 415, 422}
    assert {case.values[0].status for case in CATALOGUE} == statuses


@pytest.mark.parametrize("case", CATALOGUE)
def test_a_bad_request_gets_one_clear_error_and_changes_nothing(
    case: Bad, make_client: ClientFactory, store_url: str
):
    client = make_client(**case.server)
    seed(client)
    for method, path, body, headers in case.before:
        assert send(client, method, path, body, {**AUTH, **headers}).status_code < 300
    before = log(store_url)

    answer = send(client, case.method, case.path, case.body, case.headers)

    assert answer.status_code == case.status, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert isinstance(error, str)
    for words in case.words:
        assert words in error
    assert "Traceback" not in answer.text
    assert [ch for ch in error if validation.refused(ch)] == []
    if case.status == 405:
        assert answer.headers["Allow"] == case.allow
    assert log(store_url) == before
