"""The example of docs/bullmq.md runs as written and prints what it says."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "bullmq.md"


def test_bullmq_doc_example_runs(dsn, capsys):
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    ns: dict[str, object] = {"dsn": dsn}
    exec(compile(block, str(DOC), "exec"), ns)
    assert capsys.readouterr().out.strip() == "{'completed': 4, 'delayed': 1}"
    ns["client"].close()  # type: ignore[attr-defined]
