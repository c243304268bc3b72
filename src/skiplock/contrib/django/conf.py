"""Django's database settings as what skiplock needs: a libpq connection string."""

from __future__ import annotations

from typing import Any

from django.db import connections

from skiplock._driver.conninfo import build

__all__ = ["dsn_for"]

#: libpq parameters Django's PostgreSQL backend may pass (others, like its cursor factory, are not).
_LIBPQ = frozenset(
    {"dbname", "user", "password", "host", "port", "sslmode", "sslrootcert", "sslcert", "sslkey",
     "options", "application_name", "connect_timeout", "target_session_attrs", "service", "passfile"}
)  # fmt: skip


def dsn_for(alias: str = "default") -> str:
    """The connection string of Django database ``alias`` (which must be PostgreSQL)."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        raise ValueError(f"skiplock needs PostgreSQL; database {alias!r} is {connection.vendor}")
    params: dict[str, Any] = connection.get_connection_params()
    return build("", **{k: v for k, v in params.items() if k in _LIBPQ and v not in (None, "")})
