"""The HTTP API under FastAPI's TestClient, on every backend the `store_url` fixture offers."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from credit_contracts.web import create_app

with warnings.catch_warnings():  # starlette's notice about httpx, not about our code
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(store_url: str) -> Iterator[ClientFactory]:
    """Build a client over the test's store; `create_app` options pass through."""
    opened: list[TestClient] = []

    def make(*, raise_server_exceptions: bool = True, **options: Any) -> TestClient:
        options.setdefault("clock", "virtual")
        app = create_app(store_url, **options)
        client = TestClient(
            app, base_url="http://localhost", raise_server_exceptions=raise_server_exceptions
        )
        opened.append(client.__enter__())
        return client

    yield make
    for client in reversed(opened):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()
