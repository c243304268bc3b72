"""A throw-away PostgreSQL a test may crash and restart: never the shared server."""

from __future__ import annotations

from skiplock._embedded import EmbeddedPostgres


class Throwaway(EmbeddedPostgres):
    """An embedded PostgreSQL in a private temporary directory: ``crash()``, ``start()``, ``close()``."""
