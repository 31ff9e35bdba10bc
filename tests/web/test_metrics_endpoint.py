"""`GET /metrics` on the web server: the router of credit_contracts.web.metrics, included in an
app made by `create_app` (as api.py will), on every backend."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from credit_contracts.web import create_app
from credit_contracts.web.metrics import metrics_router
from credit_contracts.web.security import Security
from procession import open_store
from tests.web.test_api import register

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    app = create_app(store_url, clock="virtual")
    app.include_router(metrics_router())
    with TestClient(app, base_url="http://localhost") as client:
        yield client


def test_metrics_after_a_run(client: TestClient, store_url: str) -> None:
    first = samples(client)  # the runtime's stage counters count from the first scrape
    assert first[("procession_stage_runs_total", (("stage", "log"),))] == 0
    register(client, "cu-1", contracts=2)
    assert client.post("/api/run").status_code == 200
    found = samples(client)
    with open_store(store_url) as store, store.transaction(write=False) as tx:
        head = tx.head_position()
    assert head > 0
    assert found[("procession_store_up", ())] == 1
    assert found[("procession_log_head_position", ())] == head
    lags = {k: v for k, v in found.items() if k[0] == "procession_consumer_lag_events"}
    assert lags and set(lags.values()) == {0}, lags
    assert found[("procession_parked", (("kind", "delivery"),))] == 0
    assert found[("procession_stage_runs_total", (("stage", "log"),))] > 0
    assert ("procession_batch_items", (("status", "pending"),)) in found
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_metrics_are_behind_the_token_when_reads_are_protected(store_url: str) -> None:
    security = Security(token="s3cret-token-for-tests", protect_reads=True)
    app = create_app(store_url, clock="virtual", security=security)
    app.include_router(metrics_router())
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/metrics").status_code == 401
        answer = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token-for-tests"})
        assert answer.status_code == 200
        assert "procession_log_head_position" in answer.text
