"""An unreachable database raises skiplock errors only, and never shows the password.

The server is a loopback port nothing listens on (found by binding port 0 and closing it), so
libpq's connection is refused at once: no network, no timeout.
"""

from __future__ import annotations

import socket

import pytest

import skiplock
from skiplock._driver.conninfo import build
from skiplock.migrate import Migrator

PASSWORD = "unreachable-Qw7-canary"


@pytest.fixture
def closed_dsn() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Closed again: nothing listens there now (another process taking it in between is
    # vanishingly unlikely, and would only make the test fail, never pass wrongly).
    return build(host="127.0.0.1", port=port, user="skiplock", dbname="nowhere", password=PASSWORD)


def _check(exc: BaseException) -> None:
    assert isinstance(exc, skiplock.DatabaseUnavailable), repr(exc)
    assert str(exc).startswith("database unavailable: "), str(exc)
    assert "127.0.0.1" in str(exc)  # libpq's own reason names the server
    assert PASSWORD not in str(exc)


def test_wait_raises_database_unavailable(closed_dsn):
    client = skiplock.Client(closed_dsn)
    with pytest.raises(skiplock.SkiplockError) as caught:
        client.wait(1, timeout=5)
    _check(caught.value)
    client.close()


async def test_async_wait_raises_database_unavailable(closed_dsn):
    client = skiplock.AsyncClient(closed_dsn)
    with pytest.raises(skiplock.SkiplockError) as caught:
        await client.wait(1, timeout=5)
    _check(caught.value)
    await client.close()


def test_every_entry_point_raises_database_unavailable(closed_dsn):
    client = skiplock.Client(closed_dsn)
    calls = {
        "get_job": lambda: client.get_job(1),
        "enqueue": lambda: client.enqueue("t", {}),
        "events": lambda: next(iter(client.events(timeout=1))),
        "migrate up": lambda: Migrator(closed_dsn).up(),
        "migrate status": lambda: Migrator(closed_dsn).status(),
    }
    for name, call in calls.items():
        with pytest.raises(skiplock.SkiplockError) as caught:
            call()
        try:
            _check(caught.value)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    client.close()


async def test_async_events_raise_database_unavailable(closed_dsn):
    client = skiplock.AsyncClient(closed_dsn)
    with pytest.raises(skiplock.SkiplockError) as caught:
        async for _ in client.events(timeout=1):
            pass
    _check(caught.value)
    await client.close()
