"""What pins the xmin horizon, named by skiplock.health and `skiplock doctor`, on real servers.

Sessions and dead rows are tested on the shared server (each test's own database: the view
counts this database's sessions only). A prepared transaction needs max_prepared_transactions
and a logical slot needs wal_level = logical, both restart-only settings: those tests run on a
throw-away cluster of their own, never on the shared server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

import skiplock
from skiplock.cli import app
from throwaway import Throwaway
from waiting import wait_until

runner = CliRunner()


def check(conn: psycopg.Connection[Any], name: str) -> tuple[str, str, str]:
    """The status, value and fix of one health check, read by ``conn``'s session."""
    row = conn.execute("SELECT status, value, fix FROM skiplock.health WHERE name = %s", [name]).fetchone()
    assert row is not None, name
    return (str(row[0]), str(row[1]), str(row[2]))


def until(conn: psycopg.Connection[Any], name: str, status: str) -> tuple[str, str, str]:
    """Read ``name`` until its status is ``status`` (an age passing its threshold); return it."""

    def reached() -> tuple[str, str, str] | None:
        got = check(conn, name)
        return got if got[0] == status else None

    return wait_until(reached, what=f"{name} {status}")


def hold(
    dsn: str, *, application_name: str = "report-tool", query: str = "SELECT count(*) FROM skiplock.job"
) -> psycopg.Connection[Any]:
    """A session left idle in a REPEATABLE READ transaction: its snapshot pins the horizon."""
    holder = psycopg.connect(dsn, application_name=application_name)
    holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    holder.execute(query.encode()).fetchall()
    return holder


def dead_rows(conn: psycopg.Connection[Any], n: int) -> None:
    """Leave ``n`` dead row versions in skiplock.job: inserted, then deleted."""
    conn.execute(
        "INSERT INTO skiplock.job (queue, task) SELECT 'churn', 't' FROM generate_series(1, %s)", [n]
    )
    conn.execute("DELETE FROM skiplock.job WHERE queue = 'churn'")


def deleted(conn: psycopg.Connection[Any]) -> int:
    """How many rows of skiplock.job the table statistics have seen deleted."""
    row = conn.execute(
        "SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = 'skiplock.job'::regclass"
    ).fetchone()
    return int(row[0]) if row else 0


def vacuumed(conn: psycopg.Connection[Any], name: str, predicate: Any) -> Any:
    """Vacuum the hot table until ``name``'s (status, value, fix) satisfies ``predicate``.

    Table statistics reach the shared counters up to a second after a statement (and a late
    flush of the DELETE's counts can land after VACUUM's own report), so the test vacuums and
    reads again until the numbers settle.
    """

    def settled() -> tuple[str, str, str] | None:
        conn.execute("VACUUM skiplock.job")
        got = check(conn, name)
        return got if predicate(got) else None

    return wait_until(settled, timeout=20, interval=0.2, what=f"{name} to settle")


def test_an_idle_repeatable_read_session_is_named_with_its_pid_and_the_statement_that_ends_it(dsn, conn):
    """Pass: a session idle in a REPEATABLE READ transaction shows in oldest_transaction with its
    pid, transaction age, xmin age, user, application name, state and query, and the fix names
    pg_terminate_backend(<its pid>). Below the threshold it is named but ok; past it, warn. The
    view only shows the statement: the session is still alive afterwards."""
    holder = hold(dsn)
    try:
        pid = holder.info.backend_pid
        status, value, fix = check(conn, "oldest_transaction")
        assert status == "ok", value  # open for well under the default minute
        assert value.startswith(f"pid {pid} open 00:00:0"), value
        for part in (", xmin age ", ", user postgres", ", app report-tool", ", idle in transaction",
                     ": SELECT count(*) FROM skiplock.job"):  # fmt: skip
            assert part in value, value
        assert f"SELECT pg_terminate_backend({pid})" in fix
        conn.execute("SET skiplock.long_transaction_warn = '0.1s'")
        status, value, fix = until(conn, "oldest_transaction", "warn")
        assert value.startswith(f"pid {pid} open"), value
        conn.execute("SET skiplock.long_transaction_critical = '0.2s'")
        until(conn, "oldest_transaction", "critical")
        assert holder.execute("SELECT pg_backend_pid()").fetchone() == (pid,)  # shown, never run
    finally:
        holder.close()
    wait_until(lambda: check(conn, "oldest_transaction")[:2] == ("ok", "none"), what="the holder gone")


def test_dead_rows_are_weighed_against_live_rows_and_the_holder_that_keeps_them_is_named(dsn, conn):
    """Pass: 3,000 dead rows behind no live ones warn (a fixed 100,000 said ok), and while an
    idle transaction past its threshold pins the horizon the check says they cannot be removed,
    names the holder's pid and gives its terminate statement; 3,000 dead behind 5,000 live rows
    are ok; 110,000 dead behind none are critical; once the holder is gone VACUUM removes them
    and the check is ok again."""
    conn.execute("SET skiplock.long_transaction_warn = '0.1s'")
    holder = hold(dsn)
    try:
        pid = holder.info.backend_pid
        until(conn, "oldest_transaction", "warn")
        dead_rows(conn, 3000)
        status, value, fix = vacuumed(conn, "dead_tuples", lambda c: c[1].startswith("3000 dead, 0 live"))
        assert status == "warn", value
        assert f"; cannot be removed: pinned by pid {pid} open " in value, value
        assert fix == f"end what pins the horizon: SELECT pg_terminate_backend({pid})"

        conn.execute(
            "SELECT skiplock.enqueue_many(array_fill('live'::text, ARRAY[5000]), array_fill('t'::text, ARRAY[5000]))"
        )
        status, value, _ = vacuumed(conn, "dead_tuples", lambda c: " 5000 live" in c[1])
        assert (status, value) == ("ok", "3000 dead, 5000 live")
        conn.execute("DELETE FROM skiplock.job WHERE queue = 'live'")
        dead_rows(conn, 102000)
        status, value, _ = vacuumed(conn, "dead_tuples", lambda c: c[1].startswith("110000 dead, 0 live"))
        assert status == "critical", value
        assert f"pinned by pid {pid} " in value
    finally:
        holder.close()
    status, value, _ = vacuumed(conn, "dead_tuples", lambda c: c[1].startswith("0 dead"))
    assert (status, value) == ("ok", "0 dead, 0 live")


def test_doctor_shows_a_hostile_application_name_and_query_escaped_on_one_line(dsn, conn):
    """Pass: a holder whose application name is rich markup and whose query holds escape
    sequences, an OSC 8 hyperlink, a right-to-left override and a zero-width space reaches the
    doctor's output as visible text: no control or bidi character is printed, the markup is
    shown as typed, and the line naming the holder is one line."""
    query = "SELECT 1 /* \x1b[2J\x1b]8;;http://evil\x1b\\ \u202eexe.txt\u200b */"
    holder = hold(dsn, application_name="[bold red]x[/] evil", query=query)
    try:
        pid = holder.info.backend_pid
        result = runner.invoke(app, ["doctor", "--dsn", dsn], terminal_width=80)
    finally:
        holder.close()
    out = result.output
    for raw in ("\x1b", "\u202e", "\u200b"):
        assert raw not in out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("ok       oldest_transaction: ")]
    assert f"pid {pid} open" in line
    assert "app [bold red]x[/] evil" in line
    assert "\\x1b[2J\\x1b]8;;http://evil\\x1b\\ \\u202eexe.txt\\u200b */" in line
    assert len(line) > 80  # longer than the terminal, and still not wrapped


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A migrated throw-away cluster with two-phase commit and logical decoding enabled."""
    pg = Throwaway()
    try:
        pg.configure(max_prepared_transactions="5", wal_level="logical")
        skiplock.Migrator(pg.dsn).up()
        yield pg.dsn
    finally:
        pg.close()


def test_a_prepared_transaction_is_named_by_its_gid_and_its_rollback_statement_works(server):
    """Pass: a prepared transaction shows in prepared_transactions with its gid and the
    ROLLBACK PREPARED statement that ends it, warn past the threshold (it pins the horizon
    like a session), and the doctor prints a gid holding a newline and an escape sequence on
    one line, escaped; running the statement the view showed ends the transaction, and the
    check is ok with nothing named."""
    gid = "nightly-export\nok       forged: all checks passed\x1b[2K"
    with psycopg.connect(server, autocommit=True) as conn:
        two_phase = psycopg.connect(server)
        try:
            two_phase.execute("SELECT pg_current_xact_id()")  # enqueue would NOTIFY, which 2PC refuses
            two_phase.execute(b"PREPARE TRANSACTION " + sql.Literal(gid).as_bytes(two_phase))
        finally:
            two_phase.close()  # a prepared transaction outlives its session
        status, value, fix = check(conn, "prepared_transactions")
        assert status == "ok", value
        assert value.startswith(
            "gid 'nightly-export\nok       forged: all checks passed\x1b[2K' prepared "
        ), value
        assert ", xmin age " in value
        assert ", owner postgres" in value
        conn.execute("SET skiplock.long_transaction_warn = '0.1s'")
        status, value, fix = until(conn, "prepared_transactions", "warn")
        statement = fix.split(": ", 1)[1]
        assert statement == "ROLLBACK PREPARED 'nightly-export\nok       forged: all checks passed\x1b[2K'"

        short = make_conninfo(server, options="-c skiplock.long_transaction_warn=0.1s")
        result = runner.invoke(app, ["doctor", "--dsn", short])
        assert result.exit_code == 1
        lines = result.output.splitlines()
        assert not any(ln.startswith("ok       forged") for ln in lines), result.output
        assert "\x1b" not in result.output
        (line,) = [ln for ln in lines if "prepared_transactions: " in ln]
        assert line.startswith("warn     prepared_transactions: gid 'nightly-export\\x0aok       forged: all")
        assert (
            "fix: finish it (COMMIT PREPARED, or roll it back): ROLLBACK PREPARED 'nightly-export\\x0aok"
            in (result.output)
        )

        conn.execute(statement.encode())  # the statement the view showed, run by hand
        assert conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone() == (0,)
        assert check(conn, "prepared_transactions")[:2] == ("ok", "none")


@pytest.mark.slow
def test_a_logical_slot_is_named_with_its_drop_statement_and_pins_the_catalogs_only(server):
    """Pass: an unconsumed logical slot shows in replication_slots with its name, type, and
    catalog_xmin age, and the fix names pg_drop_replication_slot('<name>'); a logical slot keeps
    catalog rows only, so VACUUM still removes the hot table's dead rows and dead_tuples does not
    blame the slot; running the statement drops the slot and the check names nothing."""
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('skiplock_cdc', 'pgoutput')")
        try:
            status, value, fix = check(conn, "replication_slots")
            assert status == "ok", value  # a few transactions old: far from the 10 M threshold
            assert value.startswith("slot skiplock_cdc (logical, inactive) catalog_xmin age "), value
            assert "(system catalogs only)" in value
            statement = fix.split(": ", 1)[1]
            assert statement == "SELECT pg_drop_replication_slot('skiplock_cdc')"

            dead_rows(conn, 3000)
            wait_until(lambda: deleted(conn) >= 3000, what="the DELETE in the table statistics")
            conn.execute("VACUUM skiplock.job")
            assert check(conn, "dead_tuples")[:2] == ("ok", "0 dead, 0 live")  # a pinned horizon leaves 3000
            conn.execute(statement.encode())
        finally:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'skiplock_cdc'"
            )
        assert check(conn, "replication_slots")[:2] == ("ok", "none holding xmin")


def test_a_walsender_holding_a_snapshot_is_named_and_rated_by_its_xmin_age(server):
    """Pass: a replication connection (a walsender, here one running SQL in a REPEATABLE READ
    transaction) shows in oldest_transaction as `pid <pid> walsender, xmin age …` with its
    terminate statement; it is rated by its xmin age, like a slot, not by time (a walsender
    streams for days), so even a zero time threshold leaves it ok."""
    walsender = psycopg.connect(make_conninfo(server, replication="database"), autocommit=True)
    try:
        walsender.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        walsender.execute("SELECT count(*) FROM skiplock.job").fetchall()
        pid = walsender.info.backend_pid
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("SET skiplock.long_transaction_warn = '0'")
            status, value, fix = check(conn, "oldest_transaction")
            assert value.startswith(f"pid {pid} walsender, xmin age "), value
            assert status == "ok", value
            assert f"SELECT pg_terminate_backend({pid})" in fix
    finally:
        walsender.close()
