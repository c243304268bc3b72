"""`skiplock migrate`: install or upgrade the schema."""

from __future__ import annotations

from typing import Annotated

import typer

from skiplock.cli._common import DsnOption, console, dsn_of, fail, handle_errors
from skiplock.migrate import Migrator


@handle_errors
def migrate(
    dsn: DsnOption = None,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the DDL instead of applying it (pipe it into psql).")
    ] = False,
    status: Annotated[bool, typer.Option("--status", help="Show applied and pending migrations.")] = False,
    roles: Annotated[
        bool,
        typer.Option(
            "--roles",
            help="After migrating, create the skiplock_producer/worker/monitor roles if missing"
            " (needs CREATEROLE) and re-apply their privileges.",
        ),
    ] = False,
) -> None:
    """Install or upgrade the skiplock schema. Safe to run from many hosts at once."""
    migrator = Migrator(dsn_of(dsn))
    if sql:
        print(migrator.script(), end="")
        return
    if status:
        st = migrator.status()
        console.print(f"applied: {list(st.applied) or 'none'}", soft_wrap=True)
        console.print(f"pending: {list(st.pending) or 'none'}")
        if st.unknown:
            console.print(f"[yellow]unknown to this package: {list(st.unknown)}[/]")
        if st.mismatched:
            console.print(f"[red]changed since applied: {list(st.mismatched)}[/]", soft_wrap=True)
        return
    applied = migrator.up()
    if applied:
        console.print(f"applied migrations {applied}", soft_wrap=True)
    else:
        console.print("already up to date")
    if roles:
        granted = migrator.grant_roles()
        for role, ok in granted.items():
            console.print(f"{role}: {'privileges applied' if ok else 'missing'}")
        missing = [role for role, ok in granted.items() if not ok]
        if missing:
            creates = " ".join(f"CREATE ROLE {role} NOLOGIN;" for role in missing)
            raise fail(
                f"roles {', '.join(missing)} are missing and this user may not create them (needs"
                f" CREATEROLE): have a DBA run {creates} then run `skiplock migrate --roles` again"
            )
