"""The Python examples of docs/getting-started.md run as written, in order, on a real database."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Column, Integer, String, create_engine
from sqlalchemy.orm import declarative_base

import skiplock

DOC = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_getting_started_examples_run(dsn, conn, capsys):
    conn.execute("CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL)")
    p = conninfo_to_dict(dsn)
    engine = create_engine(f"postgresql+psycopg://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}")
    model = declarative_base()

    class User(model):  # type: ignore[misc, valid-type]
        __tablename__ = "users"
        id = Column(Integer, primary_key=True)
        email = Column(String, nullable=False)

    skiplock.configure(dsn)
    namespace = {"dsn": dsn, "engine": engine, "User": User}
    try:
        blocks = python_blocks()
        assert len(blocks) >= 5
        for block in blocks:
            if "asyncio.run(skiplock.AsyncWorker(" in block:
                continue  # runs forever by design; the burst worker below stands in for it
            exec(compile(block, str(DOC), "exec"), namespace)
        asyncio.run(
            skiplock.AsyncWorker([namespace["send_welcome"], namespace["resize"]], dsn=dsn, burst=True).run()
        )
    finally:
        skiplock.configure(None)
        engine.dispose()
    counts = dict(
        conn.execute(
            "SELECT task || ':' || state, count(*) FROM skiplock.jobs GROUP BY task, state"
        ).fetchall()
    )
    # enqueue, dedupe_key, 1,000 in one batch, and one each in the psycopg and SQLAlchemy transactions
    assert counts == {"send_welcome:completed": 1004, "resize:scheduled": 1}  # the delayed resize waits
    assert conn.execute("SELECT array_agg(id ORDER BY id) FROM users").fetchone() == ([7, 8],)
    assert "welcome, user 7" in capsys.readouterr().out
