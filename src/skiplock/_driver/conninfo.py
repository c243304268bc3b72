"""Connection strings: find, build and parse them (libpq's rules, through psycopg).

Every error names the problem without quoting the password: libpq quotes pieces of a malformed
string back, so messages go through :func:`skiplock.settings.scrub`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from skiplock.errors import ConfigError
from skiplock.settings import scrub

__all__ = ["build", "parse", "resolve_dsn"]

#: SQLAlchemy's ``dialect+driver://`` prefix, which libpq does not read.
_SQLALCHEMY_URL = re.compile(r"^\s*(postgres(?:ql)?)\+[a-z0-9_]+://", re.IGNORECASE)


def build(conninfo: str = "", /, **params: str | int | None) -> str:
    """Return ``conninfo`` (a libpq string or URL, or empty) with ``params`` set; None values are dropped.

    Raises:
        ConfigError: ``conninfo`` is not a valid connection string.
    """
    try:
        return make_conninfo(conninfo, **{k: v for k, v in params.items() if v is not None})
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid connection string: {_reason(exc, conninfo)}") from None


def parse(conninfo: str) -> dict[str, str]:
    """Return the parameters of ``conninfo`` (a libpq string or URL) as text.

    Raises:
        ConfigError: ``conninfo`` is not a valid connection string.
    """
    try:
        return {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid connection string: {_reason(exc, conninfo)}") from None


def resolve_dsn(dsn: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Return the connection string to use.

    Precedence: the explicit ``dsn``, then ``SKIPLOCK_DSN``, then ``DATABASE_URL``; otherwise the
    empty string, which makes libpq use its ``PG*`` environment variables and defaults. A
    SQLAlchemy URL (``postgresql+psycopg://…``) is read as the plain URL it names.

    Raises:
        ConfigError: the string is not a connection string; the message says where it came from.
    """
    environ = os.environ if env is None else env
    sources = (("", dsn), ("SKIPLOCK_DSN", environ.get("SKIPLOCK_DSN")),
               ("DATABASE_URL", environ.get("DATABASE_URL")))  # fmt: skip
    for source, candidate in sources:
        if candidate:
            candidate = _SQLALCHEMY_URL.sub(r"\1://", candidate, count=1)
            try:
                conninfo_to_dict(candidate)
            except psycopg.ProgrammingError as exc:
                where = f" in {source}" if source else ""
                raise ConfigError(f"invalid connection string{where}: {_reason(exc, candidate)}") from None
            return candidate
    return ""


def _reason(exc: psycopg.ProgrammingError, conninfo: str) -> str:
    return scrub(str(exc).strip() or type(exc).__name__, conninfo)
