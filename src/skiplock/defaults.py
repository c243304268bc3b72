"""Process-default clients, built from the environment on first use."""

from __future__ import annotations

import asyncio
import atexit
import threading
import weakref

from skiplock._driver.conninfo import resolve_dsn
from skiplock.client import Client
from skiplock.client_async import AsyncClient

__all__ = ["configure", "get_async_client", "get_client"]

_lock = threading.Lock()
_dsn: str | None = None
_client: Client | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def configure(dsn: str | None = None) -> None:
    """Set the DSN the default clients use (instead of the environment); closes the old sync client."""
    global _dsn, _client
    with _lock:
        _dsn = dsn
        old, _client = _client, None
    if old is not None:
        old.close()


def get_client() -> Client:
    """Return the process-default sync client (created on first use)."""
    global _client
    with _lock:
        if _client is None:
            _client = Client(resolve_dsn(_dsn))
        return _client


def get_async_client() -> AsyncClient:
    """Return the default async client of the running event loop (one per loop)."""
    loop = asyncio.get_running_loop()
    with _lock:
        client = _async_clients.get(loop)
        if client is None:
            client = AsyncClient(resolve_dsn(_dsn))
            _async_clients[loop] = client
        return client


@atexit.register
def _close_default() -> None:
    if _client is not None:
        _client.close()
