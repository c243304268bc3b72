"""docs/cli-reference.md is generated from the typer app and kept current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_is_up_to_date():
    done = subprocess.run(
        [sys.executable, "tools/cli_reference.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr + " (run python tools/cli_reference.py)"
