"""`GET /metrics`: the engine's Prometheus metrics (`procession.metrics`) over the app's store.

    app.include_router(metrics_router())

The registry is made on the first scrape, one per app (never prometheus_client's global
one): the store's gauges, read at each scrape, and the stage counters of the app's runtime
(its `POST /api/run` rounds and its background worker, if it runs one).
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from credit_contracts.web.system import WebSystem
from procession import metrics

__all__ = ["metrics_router"]

_made = threading.Lock()


def registry_of(request: Request) -> CollectorRegistry:
    state = request.app.state
    with _made:
        found: CollectorRegistry | None = getattr(state, "metrics_registry", None)
        if found is None:
            system: WebSystem = state.system
            found = metrics.registry(system.runtime.store, system.runtime)
            state.metrics_registry = found
    return found


def metrics_router() -> APIRouter:
    """A router serving `/metrics` in Prometheus' text format (not in the OpenAPI document).
    It is behind the app's security middleware like every other path."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def scrape(request: Request) -> Response:  # sync: FastAPI runs it in its thread pool
        return Response(generate_latest(registry_of(request)), media_type=CONTENT_TYPE_LATEST)

    return router
