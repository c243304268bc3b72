"""Install and upgrade the skiplock schema: versioned migrations, then the current routines.

``up()`` runs in one transaction under a transaction-level advisory lock:

1. the versioned migrations of ``sql/migrations`` not yet applied, in order, each recorded in
   ``skiplock.migration`` with the SHA-256 of its file;
2. every file of ``sql/functions`` (in the order of its ``manifest.txt``) whose checksum differs
   from the one recorded in ``skiplock.migration_file``: the repeatable migrations, which hold the
   one current definition of every function, trigger, view and grant;
3. ``sql/after_migrate.sql``, when step 1 or 2 changed anything.

Two concurrent ``up()`` calls serialise on the lock; the second finds nothing left to do. A
recorded versioned checksum that differs from the packaged file, or a version this package does
not know, is an error. A database migrated by the pre-release migrations 0001-0018 (squashed into
the baseline) is adopted: their rows are replaced by the baseline's, whose schema equals theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

from skiplock._core import queries
from skiplock._driver.session_async import AsyncSession
from skiplock._sql import QUERIES, Migration, after_migrate, legacy_migrations, migrations, routines
from skiplock.errors import DatabaseError, SchemaAhead, SchemaMissing, SchemaOutdated, SkiplockError
from skiplock.settings import redact

__all__ = ["AsyncMigrator", "MigrationStatus"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationStatus:
    """Where a database stands against the packaged migrations and routines."""

    applied: tuple[int, ...]
    pending: tuple[int, ...]
    unknown: tuple[int, ...]
    mismatched: tuple[int, ...]
    #: Files of ``sql/functions`` never applied to this database or changed since.
    routines_pending: tuple[str, ...] = ()
    #: The database was migrated by the pre-release migrations (the next ``up()`` adopts it).
    legacy: bool = False

    @property
    def is_current(self) -> bool:
        return not (self.pending or self.unknown or self.mismatched or self.routines_pending)


class AsyncMigrator:
    """Install and upgrade the skiplock schema on one database."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo

    def __repr__(self) -> str:
        return f"<skiplock.{type(self).__name__} dsn={redact(self.conninfo)!r}>"

    async def check(self) -> None:
        """Raise SchemaMissing, SchemaOutdated or SchemaAhead unless the schema is current."""
        status = await self.status()
        if not status.applied and not status.legacy:
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
        if status.pending or status.legacy:
            raise SchemaOutdated(
                f"skiplock migrations {list(status.pending)} are pending; run `skiplock migrate`"
            )
        if status.routines_pending:
            raise SchemaOutdated(
                f"the skiplock functions of {', '.join(status.routines_pending)} differ from this"
                " package's; run `skiplock migrate`"
            )

    async def grant_roles(self, *, create: bool = True) -> dict[str, bool]:
        """Create the missing group roles (when ``create`` and allowed), then apply their privileges.

        This is the only place skiplock creates roles (``skiplock migrate --roles``); ``up()``
        re-applies the privileges of the roles that exist and creates none. Each of
        ``skiplock_producer``, ``skiplock_worker`` and ``skiplock_monitor`` that exists ends with
        exactly the privileges of its job (anything else granted to the group in the schema is
        revoked); a missing one is created first (NOLOGIN) when ``create`` is true and the
        connected user has CREATEROLE, and otherwise left missing. Roles are cluster-wide: a
        ``DROP DATABASE`` leaves them. Connect as the schema owner or a superuser. Granting the
        roles to login roles stays with the DBA.

        Returns:
            For each role, whether it exists and so holds its privileges now.

        Raises:
            SkiplockError: the database refused, e.g. the user does not own the schema.
        """
        async with await self._connect() as conn:
            try:
                async with conn.transaction():
                    await conn.script(QUERIES["migration_lock"].text)
                    if create:
                        await conn.script(QUERIES["create_roles"].text)
                    rows = await conn.all(queries.grant_roles())
            except DatabaseError as exc:
                raise _failed("could not apply the skiplock roles", exc) from exc
        return {str(r["role_name"]): bool(r["granted"]) for r in rows}

    def script(self) -> str:
        """Return one psql-ready script that installs the schema and records what it applied.

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
        for r in routines():
            parts.append(f"-- functions/{r.name}\n{r.text}")
            parts.append(
                f"INSERT INTO skiplock.migration_file (name, checksum) VALUES ('{r.name}', '{r.checksum}');"
            )
        parts.append(f"-- after_migrate.sql\n{after_migrate()}")
        parts.append("COMMIT;")
        return "\n".join(parts) + "\n"

    def sql_for(self, version: int | None = None) -> str:
        """Return the DDL of one versioned migration, or of all of them in order."""
        chosen = [m for m in migrations() if version is None or m.version == version]
        if not chosen:
            raise SkiplockError(f"no migration {version}")
        return "\n".join(f"-- migration {m.version:04d}_{m.name}\n{m.text}" for m in chosen)

    async def status(self) -> MigrationStatus:
        """Compare the database's recorded migrations and routine files with the packaged ones."""
        async with await self._connect() as conn:
            present = await conn.one(queries.schema_exists())
            recorded: dict[int, str] = {}
            files: dict[str, str] = {}
            if present and present["present"]:
                recorded = await self._recorded(conn)
                files = await self._recorded_files(conn)
        if _legacy_head(recorded):
            return MigrationStatus(
                applied=(),
                pending=tuple(m.version for m in migrations()),
                unknown=(),
                mismatched=(),
                routines_pending=tuple(r.name for r in routines()),
                legacy=True,
            )
        return _compare(recorded, files)

    async def up(self, target: int | None = None) -> list[int]:
        """Apply pending migrations up to ``target`` (default: all); return the versions applied.

        The routines of ``sql/functions`` and ``after_migrate.sql`` are applied when the database
        ends at the newest version (they are the current text, written for the newest tables).
        A database adopted from the pre-release migrations reports the baseline's version.
        """
        async with await self._connect() as conn:
            try:
                async with conn.transaction():
                    return await self._up(conn, target)
            except DatabaseError as exc:
                raise _failed("skiplock migrate failed", exc) from exc

    async def verify(self) -> MigrationStatus:
        """Return the status, raising unless everything packaged is applied unchanged."""
        await self.check()
        return await self.status()

    async def _up(self, conn: AsyncSession, target: int | None) -> list[int]:
        await conn.script(QUERIES["migration_lock"].text)
        await conn.script(QUERIES["migration_bootstrap"].text)
        recorded = await self._recorded(conn)
        applied: list[int] = []
        changed = False
        if _legacy_head(recorded):
            # Their schema is the baseline's: record the baseline instead of running it.
            baseline = migrations()[0]
            await conn.run(queries.migration_forget(versions=sorted(recorded)))
            await self._record(conn, baseline)
            recorded = {baseline.version: baseline.checksum}
            applied.append(baseline.version)
            changed = True
        elif recorded and set(recorded) <= set(legacy_migrations()) and _matches_legacy(recorded):
            raise SchemaOutdated(
                f"this database was migrated by a pre-release skiplock to migration {max(recorded)};"
                f" only a database at the last pre-release migration ({max(legacy_migrations())})"
                " can be upgraded: migrate it with that version first, or drop the skiplock schema"
                " and migrate again"
            )
        status = _compare(recorded, {})
        if status.unknown:
            raise SchemaAhead(
                f"the database has skiplock migrations {list(status.unknown)} this package does"
                " not know; upgrade skiplock instead of migrating"
            )
        if status.mismatched:
            raise SchemaOutdated(
                f"applied migrations {list(status.mismatched)} differ from the packaged files"
            )
        for migration in migrations():
            if target is not None and migration.version > target:
                break
            if migration.version in recorded:
                continue
            await self._execute(conn, migration.text, f"migration {migration.version:04d}_{migration.name}")
            await self._record(conn, migration)
            applied.append(migration.version)
            changed = True
        if target is None or target >= migrations()[-1].version:
            changed = await self._apply_routines(conn) or changed
            if changed:
                await self._execute(conn, after_migrate(), "after_migrate.sql")
        return applied

    async def _apply_routines(self, conn: AsyncSession) -> bool:
        files = await self._recorded_files(conn)
        changed = False
        for routine in routines():
            if files.get(routine.name) == routine.checksum:
                continue
            await self._execute(conn, routine.text, f"functions/{routine.name}")
            await conn.run(queries.migration_file_record(name=routine.name, checksum=routine.checksum))
            changed = True
        await conn.run(queries.migration_file_forget(names=[r.name for r in routines()]))
        return changed

    async def _execute(self, conn: AsyncSession, text: str, origin: str) -> None:
        try:
            await conn.script(text)
        except SkiplockError as exc:
            # The server's own words (psycopg's text: message, position, context) after ours.
            raise SkiplockError(f"{origin} failed: {exc.__cause__ or exc}") from exc

    async def _record(self, conn: AsyncSession, migration: Migration) -> None:
        await conn.run(
            queries.migration_record(
                version=migration.version, name=migration.name, checksum=migration.checksum
            )
        )

    async def _recorded(self, conn: AsyncSession) -> dict[int, str]:
        rows = await conn.all(queries.migration_applied())
        return {int(r["version"]): str(r["checksum"]) for r in rows}

    async def _recorded_files(self, conn: AsyncSession) -> dict[str, str]:
        present = await conn.one(queries.migration_file_present())
        if not (present and present["present"]):
            return {}
        rows = await conn.all(queries.migration_files_applied())
        return {str(r["name"]): str(r["checksum"]) for r in rows}

    async def _connect(self) -> AsyncSession:
        return await AsyncSession.connect(self.conninfo)


def _failed(what: str, exc: DatabaseError) -> DatabaseError:
    """``exc`` said as what failed, in the server's own words (psycopg's text, kept as the cause's)."""
    return DatabaseError(f"{what}: {exc.__cause__ or exc}", sqlstate=exc.sqlstate)


def _matches_legacy(recorded: dict[int, str]) -> bool:
    legacy = legacy_migrations()
    return all(v in legacy and legacy[v][1] == c for v, c in recorded.items())


def _legacy_head(recorded: dict[int, str]) -> bool:
    """Whether the recorded rows are exactly the pre-release migrations 0001-0018."""
    return bool(recorded) and set(recorded) == set(legacy_migrations()) and _matches_legacy(recorded)


def _compare(recorded: dict[int, str], files: dict[str, str]) -> MigrationStatus:
    known = {m.version: m for m in migrations()}
    return MigrationStatus(
        applied=tuple(sorted(v for v in recorded if v in known)),
        pending=tuple(m.version for m in migrations() if m.version not in recorded),
        unknown=tuple(sorted(v for v in recorded if v not in known)),
        mismatched=tuple(sorted(v for v, c in recorded.items() if v in known and known[v].checksum != c)),
        routines_pending=tuple(r.name for r in routines() if files.get(r.name) != r.checksum),
    )
