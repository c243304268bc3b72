"""Test database: a real PostgreSQL through pytest-postgresql.

``SKIPLOCK_TEST_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) names the server.
If nothing answers there, a private embedded PostgreSQL is started (``skiplock[embedded]``). The schema is
migrated once into a template database; every test gets a fresh clone of it (fast, isolated).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql import factories

import skiplock
from skiplock._embedded import EmbeddedPostgres
from throwaway import Throwaway

pytest_plugins = ["pytester"]  # tests of the skiplock pytest plugin run a real pytest session

DEFAULT_TEST_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

#: A password no output may ever show. Every test's DSN carries it (trust authentication ignores
#: it) and every log record of every test is checked for it (see _no_password_in_logs).
CANARY = "canary-Zx9q-secret"


def _server() -> dict[str, Any]:
    """Return host/port/user/password of a reachable server, starting an embedded one if needed."""
    dsn = os.environ.get("SKIPLOCK_TEST_DSN", DEFAULT_TEST_DSN)
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            pass
        params = conninfo_to_dict(dsn)
    except psycopg.OperationalError:
        server = EmbeddedPostgres()  # the fallback: a real PostgreSQL of this session's own
        _EMBEDDED.append(server)
        params = conninfo_to_dict(server.dsn)
    return {
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)),
        "user": params.get("user", "postgres"),
        "password": params.get("password") or None,
    }


_EMBEDDED: list[EmbeddedPostgres] = []
SERVER = _server()


def apply_migrations(
    host: str, port: int, user: str, dbname: str, password: str | None = None, **_: Any
) -> None:
    """pytest-postgresql loader: migrate the template database once per session.

    ``SKIPLOCK_TEST_TEMPLATE_SQL`` may name a file of SQL run in the template after migrating (the
    mutation tool, tools/mutate_sql.py, puts a broken routine there to see the tests catch it).
    """
    conninfo = make_conninfo(host=host, port=port, user=user, dbname=dbname, password=password)
    skiplock.Migrator(conninfo).up()
    extra = os.environ.get("SKIPLOCK_TEST_TEMPLATE_SQL")
    if extra:
        with psycopg.connect(conninfo, autocommit=True) as c:
            c.execute(Path(extra).read_text().encode())


postgresql_noproc = factories.postgresql_noproc(
    host=SERVER["host"],
    port=SERVER["port"],
    user=SERVER["user"],
    password=SERVER["password"],
    dbname=f"skiplock_test_{os.getpid()}",  # one per session: parallel runs never collide
    load=[apply_migrations],
)
postgresql = factories.postgresql("postgresql_noproc")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for server in _EMBEDDED:
        server.close()


@pytest.fixture
def dsn(postgresql: psycopg.Connection[Any]) -> str:
    """Connection string of this test's freshly cloned, migrated database."""
    info = postgresql.info
    return make_conninfo(
        host=info.host, port=info.port, user=info.user, dbname=info.dbname, password=info.password or CANARY
    )


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the test database, for direct SQL."""
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


@pytest.fixture
def client(dsn: str) -> Iterator[skiplock.Client]:
    with skiplock.Client(dsn) as c:
        yield c


@pytest.fixture
async def aclient(dsn: str) -> AsyncIterator[skiplock.AsyncClient]:
    async with skiplock.AsyncClient(dsn) as c:
        yield c


@pytest.fixture(autouse=True)
def _isolated_registry() -> Iterator[None]:
    """Tasks and schedules declared inside one test do not leak into the next."""
    from skiplock.cron import CRON_REGISTRY

    saved, saved_cron = dict(_registry()), dict(CRON_REGISTRY)
    yield
    _registry().clear()
    _registry().update(saved)
    CRON_REGISTRY.clear()
    CRON_REGISTRY.update(saved_cron)


def _registry() -> dict[str, Any]:
    from skiplock.task import REGISTRY

    return REGISTRY


@pytest.fixture
def throwaway() -> Iterator[Throwaway]:
    """A PostgreSQL of the test's own (embedded), which it may crash and restart."""
    pg = Throwaway()
    try:
        yield pg
    finally:
        pg.close()


class _LeakCatcher(logging.Handler):
    """Collects every log record that shows the canary password."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        if CANARY in text:
            self.leaks.append(f"{record.name}: {text[:300]}")


@pytest.fixture(autouse=True)
def _no_password_in_logs() -> Iterator[None]:
    """Fail any test during which skiplock, psycopg or the pool logged the DSN's password."""
    catcher = _LeakCatcher()
    loggers = [logging.getLogger(name) for name in ("skiplock", "psycopg")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(catcher)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(catcher)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    assert not catcher.leaks, f"the password was logged: {catcher.leaks[:3]}"
