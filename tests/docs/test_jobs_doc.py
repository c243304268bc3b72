"""The Python examples of docs/jobs.md run as written, in order, with a worker running beside them."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import skiplock

DOC = Path(__file__).resolve().parents[2] / "docs" / "jobs.md"


def test_jobs_doc_examples_run(dsn, conn, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 6
    namespace: dict[str, object] = {"dsn": dsn}
    for block in blocks[:4]:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert conn.execute("SELECT state::text FROM skiplock.jobs WHERE task = 'charge'").fetchall() == [
        ("cancelled",)
    ]
    worker = skiplock.Worker([namespace["import_rows"]], dsn=dsn)  # type: ignore[list-item]
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        exec(compile(blocks[4], str(DOC), "exec"), namespace)  # waits for the worker through skiplock_done
    finally:
        worker.stop()
        thread.join(30)
    assert capsys.readouterr().out.strip().endswith("3")
    assert conn.execute(
        "SELECT state::text, result FROM skiplock.jobs WHERE task = 'import_rows'"
    ).fetchone() == (
        "completed",
        3,
    )
    exec(compile(blocks[5], str(DOC), "exec"), namespace)
    assert conn.execute(
        "SELECT count(*) FROM skiplock.job WHERE dedupe_key = 'nightly-2030-01-01'"
    ).fetchone() == (1,)
