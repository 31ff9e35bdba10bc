"""Every failure answers `{"error": "<what went wrong>", ...}` with a fitting status code.

User mistakes are 4xx with the domain's own words; nothing a client sends can produce a
traceback in a response. Unexpected failures are logged with their traceback on the server
and answered with a short 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from credit_contracts.web.idempotency import Answer, KeyReused
from credit_contracts.web.system import ClockError
from procession import (
    CommandRejected,
    ConcurrencyError,
    MalformedMessage,
    NotFound,
    ProcessionError,
    StoreUnavailable,
    UnknownMessageType,
)

log = logging.getLogger(__name__)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""The methods an `Allow` header may name (asked of every route: the app's routes include
whole routers, which answer for their own routes)."""

STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFound, 404),
    (CommandRejected, 409),
    (ConcurrencyError, 409),
    (ClockError, 409),
    (KeyReused, 422),
    (MalformedMessage, 422),
    (UnknownMessageType, 422),
    (StoreUnavailable, 503),
)
"""Most specific first: NotFound is a CommandRejected."""


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def status_of(exc: Exception) -> int:
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 500)


def body_of(exc: Exception) -> dict[str, Any]:
    return {"error": str(exc), "type": type(exc).__name__}


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    if status == 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return JSONResponse(body_of(exc), status_code=status)


def answer_of(perform: Callable[[], dict[str, Any]], status: int) -> Answer:
    """`perform`'s answer, or the domain's refusal as the answer it would get (stored with
    an idempotency key, so a retry is refused the same way)."""
    try:
        return Answer(status, perform())
    except (ProcessionError, ClockError) as exc:
        refused = status_of(exc)
        if refused >= 500:
            raise
        return Answer(refused, body_of(exc))


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    json_sent = "json" in request.headers.get("content-type", "")
    problems = [problem(e, json_sent) for e in exc.errors()]
    message = "invalid request: " + "; ".join(p["message"] for p in problems)
    return error(422, message, details=problems)


def problem(e: dict[str, Any], json_sent: bool) -> dict[str, str]:
    """One validation error in plain words: where it is and what is wrong."""
    where, kind = place(e.get("loc", ())), e.get("type")
    if kind == "json_invalid":
        reason = e.get("ctx", {}).get("error", "")
        return {"field": "body", "message": f"malformed JSON ({reason})"}
    if where == "body" and kind in ("model_attributes_type", "dict_type"):
        hint = "" if json_sent else " with Content-Type: application/json"
        return {"field": "body", "message": f"the body must be a JSON object{hint}"}
    what = "unknown field" if kind == "extra_forbidden" else e.get("msg", "invalid value")
    if kind == "value_error":  # the validator's own words, without pydantic's prefix
        what = str(e.get("ctx", {}).get("error", what))
    return {"field": where, "message": f"{where}: {what}"}


def place(loc: Sequence[Any]) -> str:
    if not loc:
        return "request"
    kind, path = loc[0], ".".join(str(part) for part in loc[1:])
    if kind == "body":
        return path or "body"
    return f"{kind} parameter {path}" if path else str(kind)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such resource: {request.method} {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path: Starlette's 405 names only the first
    matching route's (`Allow: POST` on /api/customers, which serves GET too)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error(500, f"internal error ({type(exc).__name__}); the server log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ProcessionError, domain_error)
    app.add_exception_handler(ClockError, domain_error)
    app.add_exception_handler(KeyReused, domain_error)
    app.add_exception_handler(Exception, unexpected)
