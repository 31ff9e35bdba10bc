"""Who may call the API, and what a request must look like before any route sees it.

    security = Security(token=load_token(None), allowed_hosts=("contracts.example.com",))
    app = create_app(url, security=security)

One ASGI middleware checks every request, in this order, and answers a refusal itself as
`{"error": ...}` (so a refused request never reaches a route, a store or a command):

1. **Host** (every request): the Host header must name this server: a loopback name, or one
   of `allowed_hosts`. A page on `evil.example` that rebinds its DNS name to 127.0.0.1 sends
   `Host: evil.example` and is refused (400): DNS rebinding gets nothing, not even reads.
2. **Origin** (state-changing methods): a browser sends `Origin` on every cross-site POST;
   it must be this server's own origin (403 otherwise). `Sec-Fetch-Site: cross-site` is
   refused the same way. Clients that send neither (curl, scripts) are not browsers.
3. **Token**: with a token configured, every state-changing request needs
   `Authorization: Bearer <token>` (401 otherwise); reads too with `protect_reads`.
4. **JSON only**: a state-changing request with a body must say `Content-Type:
   application/json` (415): the form encodings a cross-site `<form>` can send never reach a
   route.
5. **Size**: bodies above `max_body` bytes are refused (413) before they are read in full.

Every answer carries security headers: a Content-Security-Policy without inline script or
style (the dashboard's script and styles are files of their own), `nosniff`, no framing, no
referrer, and `Cache-Control: no-store` on the API.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TOKEN_ENV = "CREDIT_CONTRACTS_TOKEN"
TOKEN_MIN_LENGTH = 16
MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe())'"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = ("/", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/api/system")
OPEN_PREFIXES = ("/static/",)
"""Served without a token even with `protect_reads`: the page and the API's description carry
no data (`/api/system`: the clock and what needs a token), and the dashboard must load to
ask for the token."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = (  # FastAPI's Swagger UI: its own inline bootstrap and files from its CDN
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; frame-ancestors 'none'"
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class InsecureConfiguration(ValueError):
    """The server was asked to run in a way that would expose the store to anyone."""


@dataclass(frozen=True)
class Security:
    token: str | None = None
    """Needed in `Authorization: Bearer` by every state-changing request; None: no token
    (allowed only on a loopback address)."""
    protect_reads: bool = False
    """Reads need the token too (the page and the OpenAPI document stay open)."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names served besides the loopback names; "*" serves any (behind a proxy that
    checks Host itself)."""
    max_body: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < TOKEN_MIN_LENGTH:
            raise InsecureConfiguration(
                f"the token is {len(self.token)} characters long: use at least "
                f"{TOKEN_MIN_LENGTH}, e.g. from `{MAKE_TOKEN}`"
            )
        if self.protect_reads and self.token is None:
            raise InsecureConfiguration("protecting reads needs a token")

    def describe(self) -> dict[str, str]:
        """What the dashboard must ask for: "token" or "open", for changes and for reads."""
        changes = "open" if self.token is None else "token"
        return {"changes": changes, "reads": "token" if self.protect_reads else "open"}

    def summary(self) -> str:
        """One line for the operator: what needs the token."""
        if self.token is None:
            return "no token: loopback only"
        return "token needed for changes" + (" and reads" if self.protect_reads else "")

    def check_bind(self, host: str) -> None:
        """Refuse to serve a non-loopback address without a token."""
        if self.token is None and not is_loopback(host):
            raise InsecureConfiguration(
                f"refusing to serve {host} without a token: anyone who can reach it could "
                f"change ratings and sign contracts. Set {TOKEN_ENV} or --token-file "
                "(see docs/security.md), or serve 127.0.0.1"
            )

    def host_allowed(self, name: str) -> bool:
        name = name.lower()
        return name in LOOPBACK_NAMES or "*" in self.allowed_hosts or name in self.allowed_hosts

    def token_matches(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode(), self.token.encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(path: str | None, environ: MutableMapping[str, str] | None = None) -> str | None:
    """The token from `path` (its first line) or else from $CREDIT_CONTRACTS_TOKEN; None if
    neither is given. A file readable by others is refused, as ssh refuses a shared key."""
    if path is not None:
        file = Path(path)
        try:
            mode = file.stat().st_mode
            text = file.read_text()
        except OSError as exc:
            raise InsecureConfiguration(
                f"cannot read the token file {path}: {exc.strerror}"
            ) from None
        if mode & 0o077:
            raise InsecureConfiguration(
                f"the token file {path} can be read by others (mode {mode & 0o777:o}): "
                f"chmod 600 {path}"
            )
        lines = text.strip().splitlines()
        if not lines:
            raise InsecureConfiguration(f"the token file {path} is empty")
        return lines[0].strip()
    value = (os.environ if environ is None else environ).get(TOKEN_ENV, "").strip()
    return value or None


# -- the middleware ----------------------------------------------------------------------------


class Refusal(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class BodyTooLarge(Exception):
    pass


class RequestSafety:
    """The checks above, as plain ASGI: the body is read (bounded) before the app runs."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app, self.security = app, security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        send = with_security_headers(send, scope["path"])
        try:
            self.check(scope, headers)
            body = await read_body(receive, self.security.max_body)
        except Refusal as refusal:
            await answer(send, refusal.status, refusal.message, refusal.headers)
            return
        await self.app(scope, replay(body, receive), send)

    def check(self, scope: Scope, headers: dict[str, str]) -> None:
        method, path = scope["method"], scope["path"]
        host = headers.get("host", "")
        if not self.security.host_allowed(host_name(host)):
            raise Refusal(
                400,
                f"this server does not answer to the host name {host!r} (DNS rebinding "
                "protection): start it with --allowed-host NAME to serve that name",
            )
        changes = method not in SAFE_METHODS
        if changes:
            check_origin(headers, host)
        if self.security.token is not None and (changes or self.protects(path)):
            self.check_token(headers.get("authorization", ""))
        if changes:
            check_content(headers, self.security.max_body)
        elif content_length(headers) > self.security.max_body:
            raise too_large(self.security.max_body)

    def protects(self, path: str) -> bool:
        if not self.security.protect_reads:
            return False
        return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)

    def check_token(self, authorization: str) -> None:
        challenge = {"WWW-Authenticate": 'Bearer realm="credit-contracts"'}
        scheme, _, given = authorization.partition(" ")
        if not authorization:
            raise Refusal(
                401, "this server needs a token: send Authorization: Bearer <token>", challenge
            )
        if scheme.lower() != "bearer" or not self.security.token_matches(given.strip()):
            raise Refusal(401, "the token is not valid for this server", challenge)


def host_name(host: str) -> str:
    """`example.com:8000` -> `example.com`; `[::1]:8000` -> `::1`."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def check_origin(headers: dict[str, str], host: str) -> None:
    """The Origin's host and port must be the Host's. (Not its scheme: behind a proxy that
    ends TLS, the page is https and the request reaching us is http.)"""
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
        raise Refusal(
            403, f"cross-origin request refused: a page of {origin} may not change this server"
        )
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise Refusal(403, "cross-site request refused: only this server's own pages may change it")


def content_length(headers: dict[str, str]) -> int:
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        raise Refusal(400, "the Content-Length header is not a number") from None


def check_content(headers: dict[str, str], limit: int) -> None:
    length = content_length(headers)
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    has_body = length > 0 or "chunked" in headers.get("transfer-encoding", "")
    if (has_body or kind) and not (kind == "application/json" or kind.endswith("+json")):
        raise Refusal(
            415,
            f"send JSON with Content-Type: application/json (this request's: {kind or 'none'})",
        )
    if length > limit:
        raise too_large(limit)


def too_large(limit: int) -> Refusal:
    return Refusal(413, f"the request body is larger than {limit:,} bytes")


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refused as soon as it passes `limit` bytes (whatever Content-Length said)."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then waits on the real one."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def with_security_headers(send: Send, path: str) -> Send:
    csp = DOCS_CSP if path.startswith("/docs") else CSP
    extra = [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]
    if path.startswith("/api/"):
        extra.append((b"cache-control", b"no-store"))

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return sending


async def answer(send: Send, status: int, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
