"""docs/monitor.md: its SQL runs as written (on this test's database) and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from skiplock.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "monitor.md"


def test_monitor_doc_sql_runs(conn):
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 3
    dbname = conn.info.dbname
    try:
        for block in blocks:
            for statement in filter(str.strip, block.split(";")):
                conn.execute(statement.replace("DATABASE app", f'DATABASE "{dbname}"'))
    finally:
        conn.execute(f'ALTER DATABASE "{dbname}" RESET ALL')


def test_monitor_doc_commands_exist(dsn):
    runner = CliRunner()
    commands = re.findall(r"^(skiplock [^#\n|]*?)\s*(?:#.*)?$", DOC.read_text(), flags=re.M)
    assert "skiplock monitor --once" in commands
    for command in commands:
        args = command.split()[1:]
        if args[0] == "monitor" and "--once" not in args and "--json" not in args:
            args.append("--once")  # the live screen runs until Ctrl-C: test_monitor_tmux drives it
        if args[0] in ("doctor", "metrics", "worker", "events"):
            args.append("--help")  # a verdict, or a server: each tested in tests/integration
        result = runner.invoke(app, args if "--help" in args else [*args, "--dsn", dsn])
        assert result.exit_code == 0, (command, result.output)
