"""Registry of the SQL that ships with skiplock: named statements, migrations and routines.

The files under ``sql/`` are the single source of truth. In a wheel they live at
``skiplock/sql``; in a source checkout (editable install) at the repository's ``sql/``:

- ``migrations/NNNN_name.sql``: versioned DDL (tables, types, indexes, data moves), applied once
  each, in order; ``migrations/legacy.sha256`` names the pre-release migrations squashed into the
  baseline.
- ``functions/*.sql``: the current text of every function, trigger, view and grant, applied with
  ``CREATE OR REPLACE`` after the versioned migrations in the order of ``functions/manifest.txt``,
  and re-applied whenever a file's checksum changes (a repeatable migration).
- ``after_migrate.sql``: run after any migration that changed something.
- ``queries/*.sql``: the named statements the library runs, annotated (the syntax is described
  at the top of ``queries/job.sql``); ``tools/bindings.py`` generates their typed binders and row
  types (``skiplock._core.queries``) from the same parse.

This module only reads those files; it never touches a database.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import LiteralString

__all__ = [
    "QUERIES",
    "BoundStatement",
    "Column",
    "Migration",
    "Param",
    "Routine",
    "Statement",
    "after_migrate",
    "legacy_migrations",
    "migrations",
    "routines",
    "sql_root",
]

_HEADER = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s+:(?P<kind>one|many|exec)\s*$", re.M)
#: ``-- returns: col type[?], …`` and ``-- nullable: param, …`` lines inside a block.
_ANNOTATION = re.compile(r"^\s*--\s*(?P<key>returns|nullable):(?P<value>.*)$")
#: A placeholder and the cast after it: ``%(queue)s::text``, ``%(ids)b::bigint[]``.
_PLACEHOLDER = re.compile(
    r"%\((?P<name>[a-z_][a-z0-9_]*)\)(?P<format>[sb])"
    r"(?:::(?P<type>double precision|[a-z_][a-z0-9_.]*)(?P<array>(?:\[\])*))?"
)
_COLUMN = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)\s+(?P<type>[a-z_][a-z0-9_. ]*?(?:\[\])*)(?P<null>\?)?$")
_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a named statement: its name, the type of its first cast, and whether it
    may be NULL (tested with ``IS NULL`` or ``coalesce`` in the statement, or listed in
    ``-- nullable:``)."""

    name: str
    type: str
    nullable: bool


@dataclass(frozen=True, slots=True)
class Column:
    """One result column a named statement declares in ``-- returns:``."""

    name: str
    type: str
    nullable: bool


@dataclass(frozen=True, slots=True)
class Statement:
    """A named SQL statement with ``%(param)s`` placeholders.

    ``columns`` is None for a statement built by hand (its rows are described by the server);
    a parsed ``:exec`` statement declares none and returns no rows.
    """

    name: str
    text: LiteralString
    kind: str = "many"
    params: tuple[Param, ...] = ()
    columns: tuple[Column, ...] | None = None
    #: The names of ``columns``, in order, for the executors' rows.
    column_names: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class BoundStatement:
    """A named statement and the parameters to run it with."""

    statement: Statement
    params: dict[str, Any]

    @property
    def name(self) -> str:
        return self.statement.name


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned migration file."""

    version: int
    name: str
    text: LiteralString
    checksum: str


@dataclass(frozen=True, slots=True)
class Routine:
    """One current file of functions, triggers, views or grants (``sql/functions/<name>``)."""

    name: str
    text: LiteralString
    checksum: str


def sql_root() -> Path:
    """Return the directory holding ``migrations/`` and ``queries/``."""
    packaged = Path(__file__).resolve().parent / "sql"
    if (packaged / "migrations").is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "sql"
    if (checkout / "migrations").is_dir():
        return checkout
    raise FileNotFoundError(f"skiplock SQL files not found in {packaged} or {checkout}")


def parse_queries(text: str, origin: str = "<string>") -> dict[str, Statement]:
    """Split a file of ``-- name: x :kind`` blocks into statements and read their annotations.

    Raises:
        ValueError: a block has no SQL, is defined twice, or its annotations are wrong (see
            :func:`_annotated`).
    """
    headers = list(_HEADER.finditer(text))
    found: dict[str, Statement] = {}
    for i, match in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        body = text[match.end() : end].strip()
        # Drop trailing comment lines that belong to the next block's preamble.
        lines = body.splitlines()
        while lines and lines[-1].lstrip().startswith("--"):
            lines.pop()
        body = "\n".join(lines).strip()
        name = match["name"]
        if not body:
            raise ValueError(f"{origin}: query {name!r} has no SQL")
        if name in found:
            raise ValueError(f"{origin}: query {name!r} is defined twice")
        found[name] = _annotated(name, match["kind"], body, f"{origin}: query {name!r}")
    return found


def _annotated(name: str, kind: str, body: str, where: str) -> Statement:
    """Build one statement: parameters from its placeholders and casts, columns from ``-- returns:``.

    Every placeholder must be cast, the same way each time it appears. A ``:one``/``:many``
    statement must declare its result columns and an ``:exec`` one must not. Annotation lines
    are left out of the text sent to the server.
    """
    returns: list[str] = []
    nullable: set[str] = set()
    kept: list[str] = []
    for line in body.splitlines():
        annotation = _ANNOTATION.match(line)
        if annotation is None:
            kept.append(line)
        elif annotation["key"] == "returns":
            returns.append(annotation["value"])
        else:
            nullable.update(n.strip() for n in annotation["value"].split(",") if n.strip())
    sql = "\n".join(kept).strip()
    types: dict[str, str] = {}
    tested: set[str] = set()
    for placeholder in _PLACEHOLDER.finditer(sql):
        param = placeholder["name"]
        if placeholder["type"] is None:
            raise ValueError(f"{where}: parameter {param!r} has no cast (write %({param})s::type)")
        cast = placeholder["type"] + placeholder["array"]
        if types.setdefault(param, cast) != cast:
            raise ValueError(f"{where}: parameter {param!r} is cast to {types[param]} and to {cast}")
        after = sql[placeholder.end() : placeholder.end() + 12].upper()
        before = sql[max(0, placeholder.start() - 9) : placeholder.start()].lower()
        if after.lstrip().startswith("IS NULL") or before.endswith("coalesce("):
            tested.add(param)
    if unknown := nullable - types.keys():
        raise ValueError(f"{where}: -- nullable: names no parameter: {', '.join(sorted(unknown))}")
    params = tuple(Param(p, t, p in nullable or p in tested) for p, t in types.items())
    columns: tuple[Column, ...] = ()
    for spec in ",".join(returns).split(","):
        if not spec.strip():
            continue
        column = _COLUMN.match(spec.strip())
        if column is None:
            raise ValueError(f"{where}: -- returns: cannot read {spec.strip()!r} (write: name type[?])")
        columns += (Column(column["name"], column["type"], column["null"] is not None),)
    if kind == "exec" and columns:
        raise ValueError(f"{where}: an :exec statement returns nothing; drop its -- returns:")
    if kind != "exec" and not columns:
        raise ValueError(f"{where}: a :{kind} statement must declare its -- returns: columns")
    names = tuple(c.name for c in columns)
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: -- returns: names a column twice")
    return Statement(name, sql, kind, params, columns, names)


@cache
def _load_queries() -> Mapping[str, Statement]:
    queries: dict[str, Statement] = {}
    for path in sorted((sql_root() / "queries").glob("*.sql")):
        for name, stmt in parse_queries(path.read_text(encoding="utf-8"), str(path)).items():
            if name in queries:
                raise ValueError(f"{path}: query {name!r} is defined in another file too")
            queries[name] = stmt
    return queries


class _Queries(Mapping[str, Statement]):
    """Lazy view of every named statement (files are read on first use)."""

    def __getitem__(self, name: str) -> Statement:
        return _load_queries()[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(_load_queries())

    def __len__(self) -> int:
        return len(_load_queries())


QUERIES: Mapping[str, Statement] = _Queries()


@cache
def migrations() -> tuple[Migration, ...]:
    """Return every migration in version order, checking that versions are sequential."""
    found: list[Migration] = []
    for path in sorted((sql_root() / "migrations").glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file name {path.name!r} is not NNNN_name.sql")
        text = path.read_text(encoding="utf-8")
        checksum = hashlib.sha256(text.encode()).hexdigest()
        found.append(Migration(int(match["version"]), match["name"], text, checksum))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise ValueError(f"migration versions must be sequential from 1; found {migration.version}")
    return tuple(found)


@cache
def routines() -> tuple[Routine, ...]:
    """Return the files of ``sql/functions`` in the order of its ``manifest.txt``.

    Every ``.sql`` file of the folder must be listed exactly once, so a new file cannot be
    forgotten and an order is always declared.
    """
    folder = sql_root() / "functions"
    listed = [
        line.strip()
        for line in (folder / "manifest.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    present = sorted(p.name for p in folder.glob("*.sql"))
    if sorted(listed) != present or len(set(listed)) != len(listed):
        missing = sorted(set(present) - set(listed))
        unknown = sorted(set(listed) - set(present))
        twice = sorted({n for n in listed if listed.count(n) > 1})
        raise ValueError(
            f"{folder / 'manifest.txt'} must list every file of {folder} once:"
            f" not listed {missing}, not found {unknown}, listed twice {twice}"
        )
    found: list[Routine] = []
    for name in listed:
        text = (folder / name).read_text(encoding="utf-8")
        found.append(Routine(name, text, hashlib.sha256(text.encode()).hexdigest()))
    return tuple(found)


@cache
def after_migrate() -> LiteralString:
    """Return ``sql/after_migrate.sql``: statements run after any migration that changed something."""
    return (sql_root() / "after_migrate.sql").read_text(encoding="utf-8")


@cache
def legacy_migrations() -> dict[int, tuple[str, str]]:
    """Return the squashed pre-release migrations: version -> (name, sha256 of the file)."""
    found: dict[int, tuple[str, str]] = {}
    for line in (sql_root() / "migrations" / "legacy.sha256").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            version, name, checksum = line.split()
            found[int(version)] = (name, checksum)
    return found
