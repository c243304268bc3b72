"""Show that each routine's contract tests fail when the routine is broken (mutation testing).

Each mutant is one small edit of the current definition of one SQL routine: the lease-token check
dropped, the state check dropped, the attempt accounting changed, and so on. The definition is
read from a freshly migrated scratch database with ``pg_get_functiondef`` (so it does not matter
which files the routine lives in, and its SECURITY DEFINER and search_path come along), edited,
checked to compile there inside a transaction that is rolled back, and then handed to a pytest
session of the routine's test module through ``SKIPLOCK_TEST_TEMPLATE_SQL``: that session runs it
in its own template database after migrating, so every test sees the broken routine. Nothing in
the checkout and no other database is changed; the session drops its template when it ends. A
mutant that no test kills is a hole in the safety net, and the script exits 1. An edit whose text
is not found exactly once in the definition is an error: update the mutant with the routine.

Usage (from the repository root, with the server of SKIPLOCK_TEST_DSN running):

    python tools/mutate_sql.py [ROUTINE ...] [--match TEXT ...] [--list] [--no-baseline]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import skiplock

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Mutant:
    routine: str
    name: str
    old: str
    new: str
    also: tuple[tuple[str, str], ...] = ()  # more edits of the same definition, as (old, new)
    tests: tuple[str, ...] = ()
    #: Why no test can kill this mutant (it changes nothing a caller can reach); it is run anyway,
    #: so the day it is killed (or the reason stops holding) shows.
    equivalent: str = ""

    @property
    def edits(self) -> tuple[tuple[str, str], ...]:
        return ((self.old, self.new), *self.also)

    @property
    def modules(self) -> tuple[str, ...]:
        return self.tests or (f"tests/sql/test_{self.routine}.py",)


TOKEN = "x.lease_token = i.lease_token AND "
STATE = " AND x.state = 'running'"
PAUSE = ("tests/sql/test_pause_queue.py",)
WORKERS = ("tests/sql/test_register_worker.py",)
ONLY_RUNNING = (
    "no routine leaves a lease token on a job that is not running (test_complete's"
    " test_a_lease_token_only_exists_on_a_running_job shows the table's check), so the token check"
    " already implies the state"
)
MUTANTS = [
    Mutant("complete", "no lease-token check", TOKEN, ""),
    Mutant("complete", "archives the job as cancelled", "d.job, 'completed',", "d.job, 'cancelled',"),
    # The history row of every finishing path is built by one helper: its mutants are killed by
    # the contract tests of the paths that use it.
    Mutant(
        "_history_row",
        "keeps the attempt count off by one",
        "j.priority, j.attempt,",
        "j.priority, j.attempt + 1,",
        tests=("tests/sql/test_complete.py", "tests/sql/test_cancel.py"),
    ),
    Mutant(
        "_history_row",
        "drops the job's errors",
        "coalesce(errors, j.errors)",
        "coalesce(errors, '[]')",
        tests=("tests/sql/test_cancel.py", "tests/sql/test_release.py", "tests/sql/test_fail.py"),
    ),
    Mutant("complete", "finishes at now() instead of as_of", "complete.as_of,", "now(),"),
    Mutant("complete", "drops the result", "THEN d.result\n", "THEN NULL\n"),
    Mutant("complete", "no state check", STATE, "", equivalent=ONLY_RUNNING),
    Mutant("fail", "no lease-token check", "AND x.lease_token = fail.lease_token ", ""),
    Mutant(
        "fail",
        "no state check",
        " AND x.state = 'running'\n    FOR UPDATE",
        "\n    FOR UPDATE",
        equivalent=ONLY_RUNNING,
    ),
    Mutant("fail", "retries past max_attempts", "j.attempt < j.max_attempts", "j.attempt <= j.max_attempts"),
    Mutant(
        "fail",
        "counts the attempt again",
        "SET state = 'retryable',",
        "SET state = 'retryable', attempt = j.attempt + 1,",
    ),
    Mutant("fail", "ignores retryable => false", "IF fail.retryable AND", "IF"),
    Mutant("fail", "ignores a requested cancel", "AND NOT j.cancel_requested THEN", "THEN"),
    Mutant("fail", "keeps the lease", "lease_token = NULL, lease_expires_at = NULL,", ""),
    Mutant("fail", "accepts a negative retry_in", "fail.retry_in < interval '0'", "false"),
    Mutant("fail", "ignores the job's retry policy", "skiplock.retry_delay(j.retry_policy, j.attempt),", ""),
    Mutant("release", "no lease-token check", TOKEN, ""),
    Mutant("release", "keeps the attempt spent", "attempt = greatest(j.attempt - 1, 0),", ""),
    Mutant("release", "gives back every attempt", "greatest(j.attempt - 1, 0)", "0"),
    Mutant("release", "keeps the worker", ", worker_id = NULL\n", "\n"),
    Mutant(
        "release",
        "ignores a requested cancel",
        "l.tid AND NOT l.cancel_requested",
        "l.tid",
        also=(("l.tid AND l.cancel_requested", "l.tid AND false"),),
    ),
    Mutant("release", "wakes no queue", "skiplock._notify(array_agg(r.queue))", "NULL::void"),
    Mutant("release", "no state check", STATE, "", equivalent=ONLY_RUNNING),
    Mutant("reap", "no expiry check", " AND j.lease_expires_at < reap.as_of", ""),
    Mutant(
        "reap",
        "reaps a lease at its last instant",
        "j.lease_expires_at < reap.as_of",
        "j.lease_expires_at <= reap.as_of",
    ),
    Mutant(
        "reap",
        "no state check",
        "j.state = 'running' AND j.lease_expires_at",
        "j.lease_expires_at",
        equivalent=(
            "no routine leaves a lease end on a job that is not running, so the expiry check already implies the state"
        ),
    ),
    Mutant(
        "reap",
        "fails one attempt early",
        "(j.attempt >= j.max_attempts OR",
        "(j.attempt + 1 >= j.max_attempts OR",
    ),
    Mutant(
        "reap",
        "retries past max_attempts",
        "(j.attempt >= j.max_attempts OR",
        "(j.attempt > j.max_attempts OR",
    ),
    Mutant(
        "reap",
        "gives the attempt back",
        "run_at = reap.as_of,",
        "run_at = reap.as_of, attempt = j.attempt - 1,",
    ),
    Mutant("reap", "keeps the old run_at", "run_at = reap.as_of,", ""),
    Mutant("reap", "ignores a requested cancel", " OR j.cancel_requested) AS is_final", ") AS is_final"),
    Mutant("reap", "waits for locked jobs", "FOR UPDATE SKIP LOCKED", "FOR UPDATE"),
    Mutant("reap", "takes the highest ids first", "ORDER BY j.id\n", "ORDER BY j.id DESC\n"),
    Mutant(
        "reap", "forgets workers at the ttl", "w.heartbeat_at < reap.as_of", "w.heartbeat_at <= reap.as_of"
    ),
    Mutant("reap", "records no error", "errors = n.new_errors", "errors = j.errors"),
    Mutant(
        "cancel",
        "no state check: ends running jobs at once",
        "l.id AND l.state <> 'running'",
        "l.id",
        also=(("l.id AND l.state = 'running'", "l.id AND false"),),
    ),
    Mutant(
        "cancel", "does not flag running jobs", "SET cancel_requested = true", "SET cancel_requested = false"
    ),
    Mutant("cancel", "tells no worker", "PERFORM pg_notify('skiplock_cancel', j.id::text)", "PERFORM j.id"),
    Mutant(
        "cancel", "finishes at now() instead of as_of", "'cancelled', cancel.as_of)", "'cancelled', now())"
    ),
    Mutant(
        "cancel", "does not report finished jobs", "UNION ALL SELECT h.id, h.state FROM finished AS h", ""
    ),
    Mutant(
        "retry",
        "keeps the spent attempts",
        "d.priority, 0, d.max_attempts",
        "d.priority, d.attempt, d.max_attempts",
    ),
    Mutant("retry", "no state check on live jobs", " AND j.state IN ('scheduled', 'retryable')", ""),
    Mutant("retry", "no state check on history", " AND h.state IN ('failed', 'cancelled')", ""),
    Mutant(
        "retry",
        "keeps the old run_at",
        "SET state = 'available', run_at = retry.as_of",
        "SET state = 'available'",
    ),
    Mutant("retry", "drops the errors", "d.dedupe_key, d.errors", "d.dedupe_key, '[]'"),
    Mutant(
        "retry",
        "wakes no queue",
        "SELECT skiplock._notify(array_agg(x.queue)) AS n",
        "SELECT NULL::void AS n",
    ),
    Mutant("retry", "ignores a taken dedupe key", "ON CONFLICT DO NOTHING", ""),
    Mutant("set_progress", "no lease-token check", TOKEN, ""),
    Mutant("set_progress", "no state check", STATE, "", equivalent=ONLY_RUNNING),
    Mutant(
        "set_progress",
        "no range check",
        "WHERE p IS NULL OR p < 0 OR p > 100 OR p = 'NaN' LIMIT 1",
        "WHERE false",
    ),
    Mutant("set_progress", "refuses 100", "p > 100", "p >= 100"),
    Mutant(
        "set_progress",
        "lets NaN through",
        " OR p = 'NaN'",
        "",
        equivalent="PostgreSQL orders NaN above every number, so p > 100 already refuses it",
    ),
    Mutant("set_progress", "keeps long messages", "left(u.message, 1000)", "u.message"),
    Mutant("set_progress", "keeps the old message", ", progress_message = l.message", ""),
    Mutant("pause_queue", "keeps the old end of a pause", ", paused_until = EXCLUDED.paused_until", ""),
    Mutant(
        "pause_queue",
        "starts at now() instead of as_of",
        "pause_queue.queue), pause_queue.as_of",
        "pause_queue.queue), now()",
    ),
    Mutant("pause_queue", "no name check", "skiplock._check_queue(pause_queue.queue)", "pause_queue.queue"),
    Mutant(
        "resume_queue",
        "leaves the pause on",
        "SET paused_at = NULL, paused_until = NULL",
        "SET paused_until = NULL",
        tests=PAUSE,
    ),
    Mutant(
        "resume_queue",
        "wakes no worker",
        "SELECT skiplock._notify(ARRAY[resume_queue.queue]) AS n",
        "SELECT NULL::void AS n",
        tests=PAUSE,
    ),
    Mutant(
        "resume_queue",
        "no name check",
        "skiplock._check_queue(resume_queue.queue)",
        "resume_queue.queue",
        tests=PAUSE,
    ),
    Mutant(
        "register_worker",
        "re-registering overwrites the worker",
        "SET heartbeat_at = EXCLUDED.heartbeat_at;",
        "SET heartbeat_at = EXCLUDED.heartbeat_at, host = EXCLUDED.host, started_at = EXCLUDED.started_at;",
    ),
    Mutant("register_worker", "keeps a long host", "left(register_worker.host, 255)", "register_worker.host"),
    Mutant(
        "worker_heartbeat", "replaces the count", "jobs_done = w.jobs_done +", "jobs_done =", tests=WORKERS
    ),
    Mutant(
        "worker_heartbeat",
        "does not refresh",
        "SET heartbeat_at = worker_heartbeat.as_of, ",
        "SET ",
        tests=WORKERS,
    ),
    Mutant(
        "worker_heartbeat",
        "always answers true",
        "SELECT EXISTS (SELECT 1 FROM beat)",
        "SELECT true FROM (SELECT count(*) FROM beat) AS b",
        tests=WORKERS,
    ),
    Mutant(
        "deregister_worker",
        "removes nothing",
        "WHERE w.id = deregister_worker.worker_id",
        "WHERE false",
        tests=WORKERS,
    ),
    Mutant("claim", "counts no attempt", "\n                attempt = j.attempt + 1,", ""),
    Mutant(
        "claim",
        "dates the attempt now()",
        "\n                attempted_at = claim.as_of,",
        "\n                attempted_at = now(),",
    ),
    Mutant(
        "claim",
        "leases from now()",
        "\n                lease_expires_at = claim.as_of + claim.lease",
        "\n                lease_expires_at = now() + claim.lease",
    ),
    Mutant(
        "claim",
        "no state check",
        "j.state = 'available' AND j.run_at <= claim.as_of\n                  AND (picked IS NULL",
        "j.run_at <= claim.as_of\n                  AND (picked IS NULL",
    ),
    Mutant(
        "claim",
        "promotes jobs not yet due",
        "j.state IN ('scheduled', 'retryable') AND j.run_at <= claim.as_of",
        "j.state IN ('scheduled', 'retryable')",
    ),
    Mutant("claim", "accepts max_jobs 0", "claim.max_jobs < 1 OR ", ""),
    Mutant("claim", "accepts a NULL worker", "IF claim.worker_id IS NULL THEN", "IF false THEN"),
    Mutant("heartbeat", "no lease-token check", TOKEN, ""),
    Mutant("heartbeat", "no state check", STATE, "", equivalent=ONLY_RUNNING),
    Mutant(
        "heartbeat",
        "extends from now() instead of as_of",
        "= heartbeat.as_of + heartbeat.lease",
        "= now() + heartbeat.lease",
    ),
    Mutant(
        "heartbeat",
        "counts an attempt",
        "heartbeat.as_of + heartbeat.lease\n",
        "heartbeat.as_of + heartbeat.lease, attempt = j.attempt + 1\n",
    ),
]


class Scratch:
    """A migrated database of the tool's own, to read the current definitions from."""

    def __init__(self, dsn: str) -> None:
        self.admin = dsn
        self.name = f"skiplock_mutate_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.dsn = make_conninfo(dsn, dbname=self.name)

    def __enter__(self) -> Scratch:
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        skiplock.Migrator(self.dsn).up()
        return self

    def __exit__(self, *_: object) -> None:
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))

    def mutated(self, mutant: Mutant) -> str:
        """The routine's current definition with the mutant's edits, checked to compile."""
        with psycopg.connect(self.dsn) as c:
            defs = c.execute(
                "SELECT pg_get_functiondef(p.oid) FROM pg_proc AS p JOIN pg_namespace AS n"
                " ON n.oid = p.pronamespace WHERE n.nspname = 'skiplock' AND p.proname = %s",
                [mutant.routine],
            ).fetchall()
            if not defs:
                raise SystemExit(f"there is no routine skiplock.{mutant.routine}")
            # an overloaded name: the one overload every edit applies to exactly once
            fits = [d for (d,) in defs if all(d.count(old) == 1 for old, _ in mutant.edits)]
            if len(fits) != 1:
                counts = [[d.count(old) for old, _ in mutant.edits] for (d,) in defs]
                raise SystemExit(
                    f"{mutant.routine} / {mutant.name}: the edits occur {counts} times in the current"
                    " definition(s), not exactly once in one of them; update the mutant"
                )
            text = fits[0]
            for old, new in mutant.edits:
                text = text.replace(old, new)
            text += ";\n"
            c.execute(text.encode())  # it compiles; the rollback below restores the original
            c.rollback()
        return text


def run_tests(modules: tuple[str, ...], template_sql: Path | None) -> tuple[int, list[str], str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("SKIPLOCK_TEST_TEMPLATE_SQL", None)
    if template_sql is not None:
        env["SKIPLOCK_TEST_TEMPLATE_SQL"] = str(template_sql)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=no", "-rf", *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    failed = [
        line.split(" ", 1)[1].split(" - ")[0].split("::", 1)[-1]
        for line in proc.stdout.splitlines()
        if line.startswith("FAILED ")
    ]
    return proc.returncode, failed, proc.stdout + proc.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("routines", nargs="*", help="only the mutants of these routines")
    parser.add_argument("--match", action="append", default=[], help="only mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true", help="do not first run the unmutated modules")
    args = parser.parse_args(argv)
    chosen = [
        m
        for m in MUTANTS
        if (not args.routines or m.routine in args.routines)
        and (not args.match or any(text in m.name for text in args.match))
    ]
    if not chosen:
        parser.error(f"no such mutants; routines: {sorted({m.routine for m in MUTANTS})}")
    if args.list:
        for m in chosen:
            print(f"{m.routine}: {m.name}")
        return 0

    dsn = os.environ.get("SKIPLOCK_TEST_DSN", DEFAULT_DSN)
    conninfo_to_dict(dsn)  # a malformed DSN fails here, in one line
    if not args.no_baseline:
        modules = tuple(dict.fromkeys(t for m in chosen for t in m.modules))
        code, failed, output = run_tests(modules, None)
        if code != 0:
            print(output, file=sys.stderr)
            raise SystemExit(f"the unmutated tests do not pass ({failed}); fix that first")
    survivors = 0
    with Scratch(dsn) as scratch, tempfile.TemporaryDirectory(prefix="skiplock-mutants-") as tmp:
        for n, mutant in enumerate(chosen):
            path = Path(tmp) / f"{n}.sql"
            path.write_text(scratch.mutated(mutant))
            code, failed, output = run_tests(mutant.modules, path)
            if code == 1 and failed:
                print(
                    f"{mutant.routine}: {mutant.name} -> killed by {len(failed)}: {', '.join(failed)}",
                    flush=True,
                )
            elif code == 0 and mutant.equivalent:
                print(
                    f"{mutant.routine}: {mutant.name} -> survives, as expected: {mutant.equivalent}",
                    flush=True,
                )
            elif code == 0:
                survivors += 1
                print(f"{mutant.routine}: {mutant.name} -> SURVIVED", flush=True)
            else:
                print(output, file=sys.stderr)
                raise SystemExit(f"{mutant.routine}: {mutant.name}: pytest exited {code}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
