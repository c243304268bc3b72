"""`python -m skiplock …` runs the CLI."""

from __future__ import annotations

from skiplock.cli import main

main()
