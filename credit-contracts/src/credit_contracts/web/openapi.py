"""The OpenAPI document says everything the API may answer, and who may call it.

FastAPI documents the routes' successes; this adds what the middleware and the error
handlers answer (every refusal is an `Error` object), and the bearer scheme where the
server's `Security` asks for a token. `tests/web/test_fuzz.py` holds the API to it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from credit_contracts.web.security import Security

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what went wrong, in plain words"},
        "type": {"type": "string", "description": "the kind of refusal (the engine's error)"},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

EVERY = {
    400: "The Host header names another server, or the request is malformed",
    413: "The request body is too large",
    422: "The request is invalid: a parameter, a header or the body",
    503: "The store cannot be reached",
}
WRITES = {
    403: "Refused: a cross-origin request from a browser",
    404: "No such customer or contract",
    409: "Refused by the domain: the command conflicts with the current state",
    415: "The body is not JSON",
}
READS_BY_ID = {404: "No such resource"}
AUTH = {401: "A valid token is needed: `Authorization: Bearer <token>`"}


def document(app: FastAPI, security: Security) -> None:
    """Make `app.openapi()` return the completed document (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                routes=app.routes,
                description="The credit contracts API: commands in, read models out.",
            )
            complete(schema, security)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(schema: dict[str, Any], security: Security) -> None:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The server's token (CREDIT_CONTRACTS_TOKEN or --token-file)",
        }
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            writes = method.upper() not in ("GET", "HEAD", "OPTIONS")
            refusals = dict(EVERY)
            if writes:
                refusals |= WRITES
            elif "{" in path:
                refusals |= READS_BY_ID
            needs_token = security.token is not None and (
                writes or (security.protect_reads and path != "/api/system")
            )
            if needs_token:
                refusals |= AUTH
                operation["security"] = [{"bearer": []}]
            responses = operation.setdefault("responses", {})
            for status, description in refusals.items():
                responses[str(status)] = {
                    "description": description,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
