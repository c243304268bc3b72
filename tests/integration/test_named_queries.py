"""Every named statement prepares against the migrated schema and returns what it declares.

The server parses and plans each statement of sql/queries (its ``%(name)s`` placeholders turned
into ``$n``), so a misspelt column, function or cast fails here; then the parameter types the
server inferred are compared with the casts, and the result columns it describes with the
``-- returns:`` annotation (names, order and types) that the generated row types are built from.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from psycopg.pq import ExecStatus

from skiplock._sql import QUERIES, Statement

_PLACEHOLDER = re.compile(r"%\((?P<name>[a-z_][a-z0-9_]*)\)[sb]")
#: Statements the extended protocol cannot prepare: several statements in one text.
_SCRIPTS = {"migration_bootstrap"}


def numbered(stmt: Statement) -> tuple[str, list[str]]:
    """The statement with ``$n`` for each distinct placeholder, and the names in ``$n`` order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match["name"] not in names:
            names.append(match["name"])
        return f"${names.index(match['name']) + 1}"

    return _PLACEHOLDER.sub(number, stmt.text), names


def type_name(conn: psycopg.Connection[Any], oid: int) -> str:
    (name,) = conn.execute("SELECT format_type(%s, NULL)", (oid,)).fetchone() or ("?",)
    return str(name).replace("timestamp with time zone", "timestamptz")


@pytest.mark.parametrize("name", sorted(set(QUERIES) - _SCRIPTS))
def test_statement_prepares_and_returns_its_declared_columns(conn: psycopg.Connection[Any], name: str):
    stmt = QUERIES[name]
    text, names = numbered(stmt)
    prepared = conn.pgconn.prepare(name.encode(), text.encode())
    assert prepared.status == ExecStatus.COMMAND_OK, prepared.get_error_message()
    described = conn.pgconn.describe_prepared(name.encode())
    assert described.status == ExecStatus.COMMAND_OK, described.get_error_message()

    inferred = [type_name(conn, described.param_type(i)) for i in range(described.nparams)]
    assert dict(zip(names, inferred, strict=True)) == {p.name: p.type for p in stmt.params}

    returned = [
        (described.fname(i).decode(), type_name(conn, described.ftype(i))) for i in range(described.nfields)
    ]
    declared = [(c.name, c.type) for c in stmt.columns or ()]
    if stmt.kind == "exec":
        assert declared == []
    else:
        assert returned == declared


def test_every_parsed_statement_declares_its_shape():
    for stmt in QUERIES.values():
        assert stmt.columns is not None, stmt.name
        assert stmt.column_names == tuple(c.name for c in stmt.columns)
        assert "-- returns:" not in stmt.text
        assert "-- nullable:" not in stmt.text
