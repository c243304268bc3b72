"""The skiplock pytest plugin (entry point ``skiplock``): fixtures for testing code that uses skiplock.

- ``skiplock_dsn``: a fresh database with skiplock's schema, for one test. The schema is migrated
  once per session into a template database; each test gets a copy (``CREATE DATABASE ...
  TEMPLATE``, a few milliseconds). The server is ``--skiplock-dsn``, else ``SKIPLOCK_TEST_DSN``,
  else an embedded PostgreSQL (``pip install 'skiplock[embedded]'``).
- ``skiplock_client``: a :class:`skiplock.Client` on it.
- ``skiplock_clock``: a :class:`skiplock.testing.Clock` for ``drain(..., clock=...)``.

Use them with :mod:`skiplock.testing` (``drain``, ``assert_enqueued``, ``abandon``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from skiplock._driver.conninfo import build
from skiplock._driver.session import Session
from skiplock._embedded import EmbeddedPostgres
from skiplock.client import Client
from skiplock.errors import ConfigError
from skiplock.migrate import Migrator
from skiplock.testing import Clock

__all__ = ["skiplock_client", "skiplock_clock", "skiplock_dsn", "skiplock_template"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--skiplock-dsn",
        default=None,
        help="PostgreSQL server on which skiplock's fixtures create test databases"
        " (default: SKIPLOCK_TEST_DSN, else an embedded server from skiplock[embedded])",
    )


@pytest.fixture(scope="session")
def skiplock_template(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """``(server_dsn, template_name)``: a database migrated once per session, copied per test."""
    server_dsn = request.config.getoption("--skiplock-dsn") or os.environ.get("SKIPLOCK_TEST_DSN")
    embedded = None
    if not server_dsn:
        embedded = _embedded()
        server_dsn = embedded.dsn
    name = f"skiplock_template_{uuid.uuid4().hex[:12]}"
    with Session.connect(server_dsn) as admin:
        admin.create_database(name)
    try:
        Migrator(build(server_dsn, dbname=name)).up()
        yield server_dsn, name
    finally:
        with Session.connect(server_dsn) as admin:
            admin.drop_database(name)
        if embedded is not None:
            embedded.close()


@pytest.fixture
def skiplock_dsn(skiplock_template: tuple[str, str]) -> Iterator[str]:
    """A fresh, migrated database for this test (dropped after it)."""
    server_dsn, template = skiplock_template
    name = f"skiplock_test_{uuid.uuid4().hex[:12]}"
    with Session.connect(server_dsn) as admin:
        admin.create_database(name, template=template)
    try:
        yield build(server_dsn, dbname=name)
    finally:
        with Session.connect(server_dsn) as admin:
            admin.drop_database(name)


@pytest.fixture
def skiplock_client(skiplock_dsn: str) -> Iterator[Client]:
    """A client on this test's database, closed after the test."""
    with Client(skiplock_dsn) as client:
        yield client


@pytest.fixture
def skiplock_clock() -> Clock:
    """A controllable clock: ``skiplock_clock.advance(minutes=5)``, then ``drain(..., clock=...)``."""
    return Clock()


def _embedded() -> EmbeddedPostgres:
    try:
        return EmbeddedPostgres()
    except ConfigError as exc:
        raise pytest.UsageError(
            f"skiplock fixtures need a PostgreSQL server: pass --skiplock-dsn or set SKIPLOCK_TEST_DSN ({exc})"
        ) from None
