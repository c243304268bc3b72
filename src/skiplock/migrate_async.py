"""Apply the versioned SQL migrations in ``sql/migrations`` safely and idempotently.

Every migration runs in its own transaction under a transaction-level advisory lock, and is
recorded in ``skiplock.migration`` with the SHA-256 of its file. Two concurrent ``up()`` calls
serialise on the lock; the second finds nothing left to do. A recorded checksum that differs from
the packaged file, or a database that has versions this package does not know, is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from skiplock._core.statements import BoundStatement
from skiplock._driver.errors import translate
from skiplock._sql import QUERIES, Migration, migrations
from skiplock.errors import SchemaAhead, SchemaMissing, SchemaOutdated, SkiplockError
from skiplock.settings import redact

__all__ = ["AsyncMigrator", "MigrationStatus"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationStatus:
    """Where a database stands against the packaged migrations."""

    applied: tuple[int, ...]
    pending: tuple[int, ...]
    unknown: tuple[int, ...]
    mismatched: tuple[int, ...]

    @property
    def is_current(self) -> bool:
        return not (self.pending or self.unknown or self.mismatched)


class AsyncMigrator:
    """Install and upgrade the skiplock schema on one database."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo

    def __repr__(self) -> str:
        return f"<skiplock.{type(self).__name__} dsn={redact(self.conninfo)!r}>"

    async def check(self) -> None:
        """Raise SchemaMissing, SchemaOutdated or SchemaAhead unless the schema is current."""
        status = await self.status()
        if not status.applied:
            raise SchemaMissing(
                "the skiplock schema is not installed in this database; run `skiplock migrate`"
            )
        if status.unknown:
            raise SchemaAhead(
                f"the database has skiplock migrations {list(status.unknown)} this package does not know;"
                " upgrade skiplock"
            )
        if status.mismatched:
            raise SchemaOutdated(f"migrations {list(status.mismatched)} differ from the packaged files")
        if status.pending:
            raise SchemaOutdated(
                f"skiplock migrations {list(status.pending)} are pending; run `skiplock migrate`"
            )

    async def grant_roles(self) -> dict[str, bool]:
        """Create the missing group roles where allowed, then (re)apply every role's privileges.

        Runs ``skiplock._grant_roles()`` (migration 0011) under the migration lock. Each of
        ``skiplock_producer``, ``skiplock_worker`` and ``skiplock_monitor`` that exists ends with
        exactly the privileges of its job (anything else granted to the group in the schema is
        revoked); a missing one is created first (NOLOGIN) when the connected user has
        CREATEROLE, and otherwise left missing. Connect as the schema owner or a superuser.
        Granting the roles to login roles stays with the DBA.

        Returns:
            For each role, whether it exists and so holds its privileges now.

        Raises:
            SchemaMissing: migration 0011 is not applied (run ``up()`` first).
            SkiplockError: the database refused, e.g. the user does not own the schema.
        """
        async with await self._connect() as conn:
            try:
                async with conn.transaction():
                    await self._run(conn, QUERIES["migration_lock"].name)
                    rows = await self._all(conn, BoundStatement(QUERIES["grant_roles"], {}))
            except psycopg.Error as exc:
                translated = translate(exc)
                if translated is None:
                    raise SkiplockError(f"could not apply the skiplock roles: {exc}") from exc
                raise translated from exc
        return {str(r["role_name"]): bool(r["granted"]) for r in rows}

    def script(self) -> str:
        """Return one psql-ready script that installs every migration and records it.

        The script runs in one transaction under the same advisory lock as ``up()``, skips
        nothing and is not idempotent by itself: apply it to a database without the schema
        (``skiplock migrate --sql | psql``); a later ``up()`` then finds nothing to do.
        """
        # Each named query's text ends with its own ";".
        parts = ["BEGIN;", QUERIES["migration_lock"].text, QUERIES["migration_bootstrap"].text]
        for m in migrations():
            parts.append(f"-- migration {m.version:04d}_{m.name}\n{m.text}")
            parts.append(
                "INSERT INTO skiplock.migration (version, name, checksum) "
                f"VALUES ({m.version}, '{m.name}', '{m.checksum}');"
            )
        parts.append("COMMIT;")
        return "\n".join(parts) + "\n"

    def sql_for(self, version: int | None = None) -> str:
        """Return the DDL of one migration, or of all of them in order."""
        chosen = [m for m in migrations() if version is None or m.version == version]
        if not chosen:
            raise SkiplockError(f"no migration {version}")
        return "\n".join(f"-- migration {m.version:04d}_{m.name}\n{m.text}" for m in chosen)

    async def status(self) -> MigrationStatus:
        """Compare the database's recorded migrations with the packaged ones."""
        async with await self._connect() as conn:
            present = await self._one(conn, BoundStatement(QUERIES["schema_exists"], {}))
            recorded: dict[int, str] = {}
            if present and present["present"]:
                rows = await self._all(conn, BoundStatement(QUERIES["migration_applied"], {}))
                recorded = {int(r["version"]): str(r["checksum"]) for r in rows}
        return _compare(recorded, migrations())

    async def up(self, target: int | None = None) -> list[int]:
        """Apply pending migrations up to ``target`` (default: all); return the versions applied."""
        applied: list[int] = []
        for migration in migrations():
            if target is not None and migration.version > target:
                break
            if await self._apply(migration):
                applied.append(migration.version)
        return applied

    async def verify(self) -> MigrationStatus:
        """Return the status, raising unless every packaged migration is applied unchanged."""
        await self.check()
        return await self.status()

    async def _apply(self, migration: Migration) -> bool:
        async with await self._connect() as conn:
            try:
                async with conn.transaction():
                    await self._run(conn, QUERIES["migration_lock"].name)
                    await self._run(conn, QUERIES["migration_bootstrap"].name)
                    rows = await self._all(conn, BoundStatement(QUERIES["migration_applied"], {}))
                    recorded = {int(r["version"]): str(r["checksum"]) for r in rows}
                    status = _compare(recorded, migrations())
                    if status.unknown:
                        raise SchemaAhead(
                            f"the database has skiplock migrations {list(status.unknown)} this package does"
                            " not know; upgrade skiplock instead of migrating"
                        )
                    if status.mismatched:
                        raise SchemaOutdated(
                            f"applied migrations {list(status.mismatched)} differ from the packaged files"
                        )
                    if migration.version in recorded:
                        return False
                    async with conn.cursor() as cur:
                        await cur.execute(migration.text)
                    await self._all(
                        conn,
                        BoundStatement(
                            QUERIES["migration_record"],
                            {
                                "version": migration.version,
                                "name": migration.name,
                                "checksum": migration.checksum,
                            },
                        ),
                    )
                    return True
            except psycopg.Error as exc:
                translated = translate(exc)
                if translated is None:
                    raise SkiplockError(
                        f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                    ) from exc
                raise translated from exc

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        except psycopg.Error as exc:
            translated = translate(exc)
            if translated is None:
                raise
            raise translated from exc

    async def _run(self, conn: psycopg.AsyncConnection[Any], name: str) -> None:
        async with conn.cursor() as cur:
            await cur.execute(QUERIES[name].text)

    async def _all(self, conn: psycopg.AsyncConnection[Any], stmt: BoundStatement) -> list[dict[str, Any]]:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(stmt.statement.text, stmt.params or None)
            return await cur.fetchall() if cur.description is not None else []

    async def _one(self, conn: psycopg.AsyncConnection[Any], stmt: BoundStatement) -> dict[str, Any] | None:
        rows = await self._all(conn, stmt)
        return rows[0] if rows else None


def _compare(recorded: dict[int, str], packaged: tuple[Migration, ...]) -> MigrationStatus:
    known = {m.version: m for m in packaged}
    return MigrationStatus(
        applied=tuple(sorted(v for v in recorded if v in known)),
        pending=tuple(m.version for m in packaged if m.version not in recorded),
        unknown=tuple(sorted(v for v in recorded if v not in known)),
        mismatched=tuple(sorted(v for v, c in recorded.items() if v in known and known[v].checksum != c)),
    )
