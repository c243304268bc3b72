"""The Python examples of docs/queues.md run as written, in order, and leave the state they describe."""

from __future__ import annotations

import re
from pathlib import Path

import skiplock

DOC = Path(__file__).resolve().parents[2] / "docs" / "queues.md"


def test_queue_doc_examples_run(dsn, conn):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 6
    namespace = {"skiplock": skiplock, "dsn": dsn}
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)
    finally:
        namespace["client"].close()
    rows = conn.execute(
        "SELECT name, paused_until IS NOT NULL, concurrency_limit, rate_limit, rate_burst, key_concurrency_limit,"
        " key_rate_limit FROM skiplock.queue ORDER BY name"
    ).fetchall()
    assert rows == [
        ("exports", False, None, None, None, None, None),
        ("partner-api", False, None, 50.0, 10, None, None),
        ("reports", True, None, None, None, None, None),
        ("webhooks", False, None, None, None, 1, 10.0),
    ]
