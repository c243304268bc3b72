"""docs/sql.md documents every public SQL function and view, and its examples run."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"


def sql_blocks(text: str) -> list[str]:
    return re.findall(r"```sql\n(.*?)```", text, flags=re.S)


def test_every_public_function_and_view_has_a_section(conn):
    headings = set(re.findall(r"^## (skiplock\.\w+)$", DOC.read_text(), flags=re.M))
    public = {
        f"skiplock.{name}"
        for (name,) in conn.execute(
            """
            SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
            WHERE n.nspname = 'skiplock' AND p.proname NOT LIKE '\\_%'
            UNION
            SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
            WHERE n.nspname = 'skiplock' AND c.relkind = 'v'
            """
        )
    }
    assert public, "no public functions found"
    assert public - headings == set(), "undocumented"
    assert headings - public == set(), "documented but missing from the schema"


def test_examples_run_in_order_on_a_fresh_database(conn):
    blocks = sql_blocks(DOC.read_text())
    assert len(blocks) > 15
    for block in blocks:
        conn.execute(block)
    # The walk-through leaves the states it describes.
    states = dict(conn.execute("SELECT task, max(state::text) FROM skiplock.jobs GROUP BY task"))
    assert states["resize"] == "completed"
    assert states["send_digest"] == "cancelled"
    assert conn.execute("SELECT count(*) FROM skiplock.jobs WHERE task = 'send_welcome'").fetchone() == (3,)
