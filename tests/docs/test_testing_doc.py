"""The example test module of docs/testing.md passes when run by pytest with the plugin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def test_testing_doc_example_passes(pytester: pytest.Pytester, dsn: str):
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    pytester.makepyfile(test_shop=block)
    result = pytester.runpytest_subprocess(
        "--skiplock-dsn", make_conninfo(dsn, dbname="postgres"), "-p", "no:cacheprovider", "-q"
    )
    result.assert_outcomes(passed=3)
