"""The Python examples of docs/cron.md run as written, in order, on a real database."""

from __future__ import annotations

import re
from pathlib import Path

from skiplock.cron import CRON_REGISTRY

DOC = Path(__file__).resolve().parents[2] / "docs" / "cron.md"


def test_cron_doc_examples_run(dsn, conn):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 3
    namespace: dict[str, object] = {"dsn": dsn}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    assert CRON_REGISTRY["refresh_dashboard"].tz == "Europe/Paris"
    exec(compile(blocks[1], str(DOC), "exec"), namespace)
    row = conn.execute("SELECT cron, task, queue, args, catch_up FROM skiplock.schedule").fetchone()
    assert row[:4] == ("30 2 * * *", "export_orders", "exports", {"full": True})
    assert row[4].total_seconds() == 6 * 3600
    exec(compile(blocks[2], str(DOC), "exec"), namespace)
    assert conn.execute("SELECT count(*) FROM skiplock.schedule").fetchone() == (0,)
