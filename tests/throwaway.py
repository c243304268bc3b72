"""A throw-away PostgreSQL a test may crash, restart and reconfigure: never the shared server."""

from __future__ import annotations

import psycopg
from psycopg import sql

from skiplock._embedded import EmbeddedPostgres


class Throwaway(EmbeddedPostgres):
    """An embedded PostgreSQL in a private temporary directory: ``crash()``, ``start()``, ``close()``."""

    def configure(self, **settings: str) -> None:
        """Set server settings with ALTER SYSTEM and restart, for those only a restart applies
        (``wal_level``, ``max_prepared_transactions``)."""
        with psycopg.connect(self.dsn, autocommit=True) as c:
            for name, value in settings.items():
                c.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
                )
        self.stop()
        self.start()
