"""The Python examples of docs/workflows.md run as written, in order, then a worker drains them and
every outcome the page describes is checked."""

from __future__ import annotations

import re
from pathlib import Path

import skiplock

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"


def test_workflows_doc_examples_run(dsn, conn, capsys):
    conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance_cents bigint NOT NULL)")
    conn.execute("CREATE TABLE ledger_entries (transfer_id text, account_id int, amount_cents bigint)")
    conn.execute("INSERT INTO accounts VALUES (7, 0)")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 7
    ns: dict[str, object] = {"dsn": dsn}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), ns)
    out = capsys.readouterr().out.splitlines()
    assert out == ["['available', 'waiting', 'waiting', 'waiting']", "waiting 1"]

    tasks = [ns[name] for name in ("step", "report", "etl", "thumb", "summarize", "credit")]
    skiplock.Worker(tasks, dsn=dsn, burst=True).run()  # type: ignore[arg-type]

    client: skiplock.Client = ns["client"]  # type: ignore[assignment]
    state = {j.id: j for j in client.list_jobs(limit=1000)}
    assert all(state[i].state is skiplock.JobState.COMPLETED for i in [*ns["ids"], ns["later"].id])  # type: ignore[attr-defined]
    assert state[ns["job"].id].result == "resize done (completed), thumbnail done (completed)"  # type: ignore[attr-defined]
    assert [state[i].state.value for i in ns["pipeline"]] == ["completed", "failed", "cancelled"]  # type: ignore[attr-defined]
    assert state[ns["callback"]].result == {"pixels": 64 * 64 + 128 * 128, "errors": ["4096px is too large"]}
    assert conn.execute("SELECT balance_cents FROM accounts WHERE id = 7").fetchone() == (2500,)
    assert conn.execute("SELECT count(*) FROM ledger_entries").fetchone() == (1,)
    client.close()
