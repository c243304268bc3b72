"""The worker's JSON decoder gives what json.loads gives, for what PostgreSQL sends and for
anything else."""

from __future__ import annotations

import json

import pytest

from skiplock._driver.jsonb import loads


@pytest.mark.parametrize(
    "text",
    [
        '{"i": 1}',
        "{}",
        "[]",
        '{"a": [1, 2.5, null, true, false], "b": {"c": "\\u00e9\\n"}}',
        '"text"',
        "12",
        "null",
        '{"emoji": "\U0001f600", "nul": "\\u0000"}',
        ' {"padded": 1} ',  # never sent by PostgreSQL: decoded all the same
    ],
)
def test_it_decodes_as_json_does(text):
    assert loads(text.encode()) == json.loads(text)
    assert loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1} trailing', "", "{", "nan-ish"])
def test_what_is_not_json_raises_jsons_own_error(text):
    with pytest.raises(json.JSONDecodeError):
        loads(text.encode())
