"""Registry of the SQL that ships with skiplock: named statements and migrations.

The files under ``sql/`` are the single source of truth. In a wheel they live at
``skiplock/sql``; in a source checkout (editable install) at the repository's ``sql/``.
This module only reads those files; it never touches a database.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import LiteralString

__all__ = ["QUERIES", "Migration", "Statement", "migrations", "sql_root"]

# The :one / :many / :exec suffix tells the reader what a statement returns; nothing reads it.
_HEADER = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s+:(?:one|many|exec)\s*$", re.M)
_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
NO_TRANSACTION = "-- skiplock:no-transaction"


@dataclass(frozen=True, slots=True)
class Statement:
    """A named SQL statement with ``%(param)s`` placeholders."""

    name: str
    text: LiteralString


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned migration file."""

    version: int
    name: str
    text: LiteralString
    checksum: str

    @property
    def in_transaction(self) -> bool:
        """Whether the migration runs inside a transaction (the default)."""
        return not self.text.lstrip().startswith(NO_TRANSACTION)


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
    """Split a file of ``-- name: x :kind`` blocks into statements."""
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
        found[name] = Statement(name, body)
    return found


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
