"""The annotations of sql/queries: parameters from placeholders and casts, columns from -- returns:."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from skiplock._core import queries
from skiplock._sql import Column, Param, parse_queries

ROOT = Path(__file__).resolve().parents[2]


def test_parameters_come_from_the_casts_and_columns_from_returns():
    (stmt,) = parse_queries(
        """
-- name: pause :one
-- A comment that stays.
-- returns: name text, paused_until timestamptz?
-- returns: ids bigint[]
-- nullable: until
SELECT * FROM skiplock.pause_queue(queue => %(queue)s::text, until => %(until)s::timestamptz,
    x => coalesce(%(as_of)s::timestamptz, now()), y => %(ids)b::bigint[]::text[])
WHERE %(queue)s::text IS NOT NULL AND (%(state)s::skiplock.job_state IS NULL);
"""
    ).values()
    assert stmt.kind == "one"
    assert stmt.params == (
        Param("queue", "text", False),
        Param("until", "timestamptz", True),
        Param("as_of", "timestamptz", True),  # coalesce(
        Param("ids", "bigint[]", False),
        Param("state", "skiplock.job_state", True),  # IS NULL
    )
    assert stmt.columns == (
        Column("name", "text", False),
        Column("paused_until", "timestamptz", True),
        Column("ids", "bigint[]", False),
    )
    assert stmt.column_names == ("name", "paused_until", "ids")
    assert "-- A comment that stays." in stmt.text
    assert "returns:" not in stmt.text
    assert "nullable:" not in stmt.text


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("-- name: q :one\nSELECT 1 AS one;", "must declare its -- returns:"),
        ("-- name: q :exec\n-- returns: one integer\nSELECT 1;", "returns nothing"),
        ("-- name: q :exec\nSELECT %(x)s;", "has no cast"),
        ("-- name: q :exec\nSELECT %(x)s::text, %(x)s::integer;", "cast to text and to integer"),
        ("-- name: q :exec\n-- nullable: y\nSELECT %(x)s::text;", "names no parameter: y"),
        ("-- name: q :one\n-- returns: one\nSELECT 1 AS one;", "cannot read 'one'"),
        ("-- name: q :one\n-- returns: a int, a int\nSELECT 1 AS a, 2 AS a;", "a column twice"),
    ],
)
def test_wrong_annotations_are_refused(block: str, message: str):
    with pytest.raises(ValueError, match=message):
        parse_queries(block)


def test_the_generated_bindings_are_up_to_date():
    done = subprocess.run(
        [sys.executable, "tools/bindings.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr + " (run python tools/bindings.py)"


def test_a_generated_binder_takes_keywords_and_sends_lists():
    bound = queries.claim(
        queues=("a", "b"), worker_id=uuid.UUID(int=1), max_jobs=5, lease=timedelta(seconds=30)
    )
    assert bound.name == "claim"
    assert bound.params == {
        "queues": ["a", "b"],  # psycopg adapts a list as an array, not a tuple
        "worker_id": uuid.UUID(int=1),
        "max_jobs": 5,
        "lease": timedelta(seconds=30),
        "as_of": None,
    }
    with pytest.raises(TypeError):
        queries.claim(["a"], uuid.UUID(int=1), 5, timedelta(seconds=30))  # type: ignore[misc]
