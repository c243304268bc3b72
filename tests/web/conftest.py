"""Fixtures of the dashboard's tests: seeded databases and in-process clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")
pytest.importorskip("jinja2", reason="the web extra is not installed")

from starlette.testclient import TestClient
from web_seed import seed_every_state

import skiplock.web


@pytest.fixture
def seeded(dsn: str) -> dict[str, int]:
    """Jobs in every state in this test's database: a job id per state."""
    return seed_every_state(dsn)


@pytest.fixture
def make_client(dsn: str) -> Iterator[Any]:
    """Build a TestClient of a dashboard on this test's database (closed at the end)."""
    clients: list[TestClient] = []

    def make(**options: Any) -> TestClient:
        client = TestClient(skiplock.web.app(dsn, **options), base_url="http://127.0.0.1")
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
