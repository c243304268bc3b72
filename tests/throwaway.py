"""A throw-away PostgreSQL a test may crash and restart: never the shared server."""

from __future__ import annotations

import warnings
from pathlib import Path


class Throwaway:
    """An embedded PostgreSQL in a temporary directory that a test may crash and restart."""

    def __init__(self, datadir: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

        self._pgserver = pgserver
        self.server = pgserver.get_server(datadir, cleanup_mode="stop")
        self.dsn = self.server.get_uri()

    def crash(self) -> None:
        """Stop at once, like a power cut: no checkpoint, connections dropped."""
        self._pgserver.pg_ctl(
            ["-w", "-m", "immediate", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        with self.server._lock:
            self.server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()
