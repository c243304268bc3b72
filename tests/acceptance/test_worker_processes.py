"""`skiplock worker --processes N`: a real supervisor and its real worker processes.

Each task writes a row to a side-effect ledger (outside skiplock) with the pid that ran it, so the
tests can tell which process ran each job and how often. Processes are found through /proc and the
worker registry (`skiplock.worker.pid`), and every wait is on a condition with a deadline.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

import skiplock
from processes import stop
from skiplock.cli import app
from waiting import wait_until

TASKS = textwrap.dedent(
    """
    from __future__ import annotations

    import os
    import threading
    import time

    import psycopg

    import skiplock

    _local = threading.local()


    def _ledger() -> psycopg.Connection:
        conn = getattr(_local, "conn", None)
        if conn is None:
            conn = _local.conn = psycopg.connect(os.environ["SKIPLOCK_DSN"], autocommit=True)
        return conn


    def without_pdeathsig(worker, index):
        import ctypes

        ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG 0: leave it to the pid watch


    def fail_at_start(worker, index):
        raise SystemExit(3)  # an initializer that cannot work: every start of the process fails


    @skiplock.task(queue="procs")
    def record(i: int) -> int:
        job = skiplock.current_job()
        _ledger().execute(
            "INSERT INTO ledger (job_id, attempt, pid) VALUES (%s, %s, %s)", [job.job.id, job.attempt, os.getpid()]
        )
        time.sleep(float(os.environ.get("TASK_SECONDS", "0")))
        return i
    """
)

#: The Python API: the same supervisor from a script of one's own (spawn needs the main guard).
API_SCRIPT = textwrap.dedent(
    """
    import logging
    import sys

    from skiplock.worker import run_processes

    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO)
        sys.exit(run_processes(2, modules=["proctasks"], queues=["procs"], concurrency=4, burst=True))
    """
)

#: A worker process that exits with status 3 each time it starts.
CRASHING_SCRIPT = textwrap.dedent(
    """
    import logging
    import sys

    import proctasks
    from skiplock.worker import run_processes

    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO)
        sys.exit(run_processes(1, modules=["proctasks"], initializer=proctasks.fail_at_start))
    """
)

#: Worker processes that gave up PDEATHSIG: only their watch on the parent pid is left.
WATCH_ONLY_SCRIPT = textwrap.dedent(
    """
    import logging
    import sys
    from datetime import timedelta

    import proctasks
    from skiplock.worker import run_processes

    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO)
        sys.exit(
            run_processes(
                2,
                modules=["proctasks"],
                initializer=proctasks.without_pdeathsig,
                concurrency=2,
                grace_period=timedelta(seconds=5),
            )
        )
    """
)

_LOGS = itertools.count()


@pytest.fixture
def workdir(conn: psycopg.Connection, tmp_path: Path) -> Path:
    conn.execute("CREATE TABLE ledger (job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL)")
    (tmp_path / "proctasks.py").write_text(TASKS)
    return tmp_path


def start(dsn: str, cwd: Path, *args: str, task_seconds: float = 0.0) -> subprocess.Popen[bytes]:
    """Start `python -m skiplock worker proctasks ARGS`; its log goes to a file (a pipe could fill)."""
    env = {**os.environ, "SKIPLOCK_DSN": dsn, "TASK_SECONDS": str(task_seconds), "PYTHONUNBUFFERED": "1"}
    with open(cwd / f"supervisor-{next(_LOGS)}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "skiplock", "worker", "proctasks", "--queues", "procs", *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def logs(cwd: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(cwd.glob("supervisor-*.log")))


def enqueue(client: skiplock.Client, n: int) -> list[int]:
    return client.enqueue_many(
        [skiplock.JobSpec(task="record", args={"i": i}, queue="procs") for i in range(n)]
    )


def scalar(conn: psycopg.Connection, sql: str, params: list[object] | None = None) -> object:
    return conn.execute(sql, params).fetchone()[0]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: it has a /proc entry that is not a zombie (an orphan's zombie stays
    until its new parent reaps it, and some containers' init never does)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from the parent pids in /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {p for p in found if alive(p)}


def registered_pids(conn: psycopg.Connection) -> set[int]:
    """Pids of the worker processes in the registry that are alive now."""
    return {pid for (pid,) in conn.execute("SELECT pid FROM skiplock.worker") if alive(pid)}


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_processes_drain_one_queue_each_job_once(dsn, client, conn, workdir):
    ids = enqueue(client, 4_000)
    supervisor = start(dsn, workdir, "--processes", "2", "--concurrency", "8")
    try:
        wait_until(
            lambda: scalar(conn, "SELECT count(*) FROM skiplock.job") == 0, timeout=180, what="drained"
        )
    finally:
        code = stop(supervisor)
    assert code == 0, logs(workdir)
    runs, jobs, pids = conn.execute(
        "SELECT count(*), count(DISTINCT job_id), count(DISTINCT pid) FROM ledger"
    ).fetchone()
    assert (runs, jobs) == (4_000, 4_000)  # every job ran exactly once
    assert pids == 2  # by both worker processes
    assert supervisor.pid not in {p for (p,) in conn.execute("SELECT DISTINCT pid FROM ledger")}
    done = scalar(
        conn,
        "SELECT count(DISTINCT id) FROM skiplock.job_history WHERE state = 'completed' AND id = ANY(%s)",
        [ids],
    )
    assert done == 4_000


@pytest.mark.subprocess
@pytest.mark.slow
@needs_proc
def test_sigterm_stops_every_process_gracefully(dsn, client, conn, workdir):
    """SIGTERM to the supervisor: each process finishes what it started, releases what it had only
    leased (attempt unspent), and exits; the supervisor exits 0."""
    ids = enqueue(client, 60)
    supervisor = start(
        dsn, workdir, "--processes", "2", "--concurrency", "2", "--prefetch", "4", task_seconds=0.5
    )
    try:
        wait_until(
            lambda: scalar(conn, "SELECT count(DISTINCT pid) FROM ledger") == 2,
            timeout=60,
            what="both processes running jobs",
        )
        children = descendants(supervisor.pid)
        code = stop(supervisor, signal.SIGTERM)
    finally:
        stop(supervisor, signal.SIGKILL)
    assert code == 0, logs(workdir)
    wait_until(lambda: not {p for p in children if alive(p)}, timeout=30, what="the children gone")
    started = {r[0] for r in conn.execute("SELECT DISTINCT job_id FROM ledger")}
    rows = dict(
        conn.execute("SELECT id, state::text || ':' || attempt FROM skiplock.jobs WHERE id = ANY(%s)", [ids])
    )
    assert {rows[i] for i in started} == {"completed:1"}  # what had started finished
    assert {rows[i] for i in ids if i not in started} == {
        "available:0"
    }  # the rest: released, no attempt spent
    assert "received SIGTERM: stopping the worker processes gracefully" in logs(workdir)


@pytest.mark.subprocess
@pytest.mark.slow
@needs_proc
def test_a_second_signal_stops_every_process_at_once(dsn, client, conn, workdir):
    """SIGTERM, then SIGTERM again while jobs that take a minute run: the processes release those jobs
    without counting an attempt and exit at once; the supervisor exits 1."""
    ids = enqueue(client, 8)
    supervisor = start(
        dsn,
        workdir,
        "--processes",
        "2",
        "--concurrency",
        "2",
        "--prefetch",
        "0",
        "--grace",
        "60",
        task_seconds=60,
    )
    try:
        wait_until(
            lambda: scalar(conn, "SELECT count(*) FROM ledger") == 4, timeout=60, what="4 jobs running"
        )
        children = descendants(supervisor.pid)
        supervisor.send_signal(signal.SIGTERM)
        wait_until(
            lambda: logs(workdir).count("received SIGTERM: stopping gracefully") == 2,
            timeout=30,
            what="both processes stopping gracefully",
        )
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(timeout=30)  # well before the 60 s grace period and the jobs' 60 s
    finally:
        stop(supervisor, signal.SIGKILL)
    assert code == 1, logs(workdir)
    wait_until(lambda: not {p for p in children if alive(p)}, timeout=30, what="the children gone")
    rows = dict(
        conn.execute("SELECT id, state::text || ':' || attempt FROM skiplock.jobs WHERE id = ANY(%s)", [ids])
    )
    assert set(rows.values()) == {"available:0"}, rows  # released, running or not, no attempt spent
    assert "received SIGTERM again: stopping the worker processes at once" in logs(workdir)


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_ctrl_c_to_the_whole_process_group_is_one_graceful_stop(dsn, client, conn, workdir):
    """A terminal's Ctrl-C signals its whole foreground process group. The worker processes run in a
    group of their own, so each sees the supervisor's one forwarded SIGINT, not a second copy that
    would force the stop: running jobs finish, and the supervisor exits 0."""
    ids = enqueue(client, 20)
    env = {**os.environ, "SKIPLOCK_DSN": dsn, "TASK_SECONDS": "1", "PYTHONUNBUFFERED": "1"}
    with open(workdir / "supervisor-group.log", "wb") as log:
        supervisor = subprocess.Popen(
            [
                *(sys.executable, "-m", "skiplock", "worker", "proctasks", "--queues", "procs"),
                *("--processes", "2", "--concurrency", "1", "--prefetch", "0"),
            ],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, as a shell gives a foreground job
        )
    try:
        wait_until(
            lambda: scalar(conn, "SELECT count(DISTINCT pid) FROM ledger") == 2,
            timeout=60,
            what="both processes running jobs",
        )
        os.killpg(supervisor.pid, signal.SIGINT)
        code = supervisor.wait(timeout=60)
    finally:
        stop(supervisor, signal.SIGKILL)
    assert code == 0, logs(workdir)
    assert "again: stopping at once" not in logs(workdir)
    started = {r[0] for r in conn.execute("SELECT DISTINCT job_id FROM ledger")}
    rows = dict(
        conn.execute("SELECT id, state::text || ':' || attempt FROM skiplock.jobs WHERE id = ANY(%s)", [ids])
    )
    assert {rows[i] for i in started} == {"completed:1"}
    assert {rows[i] for i in ids if i not in started} == {"available:0"}


def free_port_pair() -> int:
    """A port P with P + 1 free too (for two processes' metrics)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two consecutive free ports")


@pytest.mark.subprocess
@pytest.mark.slow
def test_each_process_serves_its_metrics_on_its_own_port(dsn, client, conn, workdir):
    pytest.importorskip("prometheus_client")
    enqueue(client, 200)
    port = free_port_pair()
    supervisor = start(dsn, workdir, "--processes", "2", "--metrics-port", str(port))

    def completed(p: int) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        lines = [
            line
            for line in text.splitlines()
            if line.startswith('skiplock_worker_jobs_total{outcome="completed"}')
        ]
        return float(lines[0].split()[-1]) if lines else 0.0  # it answered, and completed nothing yet

    def both_counted() -> tuple[float, float] | None:
        first, second = completed(port), completed(port + 1)
        if first is None or second is None or first + second != 200:
            return None
        return first, second

    try:
        wait_until(lambda: scalar(conn, "SELECT count(*) FROM skiplock.job") == 0, timeout=60, what="drained")
        counts = wait_until(both_counted, timeout=30, what="both processes' metrics count every completion")
    finally:
        code = stop(supervisor)
    assert code == 0, logs(workdir)
    assert sum(counts) == 200  # each port served one process's own count


@pytest.mark.subprocess
@pytest.mark.slow
def test_one_process_is_the_worker_itself(dsn, client, conn, workdir):
    """`--processes 1` is today's worker: no supervisor, the command's own process claims."""
    enqueue(client, 10)
    worker = start(dsn, workdir, "--processes", "1")
    try:
        wait_until(lambda: scalar(conn, "SELECT count(*) FROM skiplock.job") == 0, timeout=60, what="drained")
        assert {pid for (pid,) in conn.execute("SELECT DISTINCT pid FROM ledger")} == {worker.pid}
    finally:
        code = stop(worker)
    assert code == 0, logs(workdir)
    assert "supervisor" not in logs(workdir)


@pytest.mark.subprocess
@pytest.mark.slow
@needs_proc
def test_a_killed_process_is_restarted_and_its_jobs_are_recovered(dsn, client, conn, workdir):
    """kill -9 of one worker process: the supervisor logs why and starts another; the jobs the dead one
    held come back when their 2 s leases expire (the reaper of a live process), and every job is
    completed exactly once."""
    ids = enqueue(client, 2_000)
    supervisor = start(
        dsn, workdir, "--processes", "2", "--concurrency", "4", "--lease", "2", task_seconds=0.005
    )
    try:
        wait_until(
            lambda: scalar(conn, "SELECT count(DISTINCT pid) FROM ledger") == 2,
            timeout=60,
            what="both processes running jobs",
        )
        first = registered_pids(conn)
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        try:
            wait_until(lambda: registered_pids(conn) - first, timeout=60, what="a new worker process")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the log:\n{logs(workdir)}") from None
        assert supervisor.poll() is None
        wait_until(
            lambda: scalar(conn, "SELECT count(*) FROM skiplock.job") == 0, timeout=120, what="drained"
        )
    finally:
        code = stop(supervisor)
    assert code == 0, logs(workdir)
    done = conn.execute(
        "SELECT count(*), count(DISTINCT id) FROM skiplock.job_history WHERE state = 'completed' AND id = ANY(%s)",
        [ids],
    ).fetchone()
    assert done == (2_000, 2_000)  # none lost, none finalized twice
    reaped = scalar(
        conn, 'SELECT count(*) FROM skiplock.job_history WHERE errors @> \'[{"type": "LeaseExpired"}]\''
    )
    assert reaped > 0  # the victim held leases when it died
    assert f"(pid {victim}) was killed by SIGKILL" in logs(workdir)
    assert "restarting it in 1.0 s" in logs(workdir)


@pytest.mark.subprocess
@pytest.mark.slow
@needs_proc
def test_no_process_outlives_a_killed_supervisor(dsn, client, conn, workdir):
    """kill -9 of the supervisor: its worker processes see it gone (PDEATHSIG, or their watch on the
    parent pid), stop gracefully and exit; no job is left running."""
    enqueue(client, 200)
    supervisor = start(
        dsn, workdir, "--processes", "2", "--concurrency", "2", "--grace", "5", task_seconds=0.05
    )
    try:
        wait_until(
            lambda: scalar(conn, "SELECT count(DISTINCT pid) FROM ledger") == 2,
            timeout=60,
            what="both processes running jobs",
        )
        children = descendants(supervisor.pid)
        assert registered_pids(conn) <= children
        assert len(registered_pids(conn)) == 2
        supervisor.send_signal(signal.SIGKILL)
        assert supervisor.wait(timeout=30) == -signal.SIGKILL
        wait_until(
            lambda: not {p for p in children if alive(p)},
            timeout=60,
            what="every child of the supervisor gone",
        )
    finally:
        stop(supervisor, signal.SIGKILL)
    # They stopped gracefully: what ran finished, what was only leased went back.
    assert scalar(conn, "SELECT count(*) FROM skiplock.job WHERE state = 'running'") == 0, logs(workdir)
    assert "stopping gracefully" in logs(workdir)


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_process_that_keeps_dying_is_restarted_ever_later(dsn, workdir):
    """A process that exits with status 3 at every start: the supervisor says so each time and waits
    1, 2, then 4 s before the next start; SIGTERM still ends it while it waits."""
    (workdir / "crashing.py").write_text(CRASHING_SCRIPT)
    env = {**os.environ, "SKIPLOCK_DSN": dsn, "PYTHONUNBUFFERED": "1"}
    with open(workdir / "supervisor-crashing.log", "wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "crashing.py"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: "restarting it in 4.0 s" in logs(workdir), timeout=60, what="the third restart")
        code = stop(supervisor, signal.SIGTERM)
    finally:
        stop(supervisor, signal.SIGKILL)
    assert code == 0, logs(workdir)
    delays = [
        line.rpartition("restarting it in ")[2]
        for line in logs(workdir).splitlines()
        if "exited with status 3 after" in line
    ]
    assert delays[:3] == ["1.0 s", "2.0 s", "4.0 s"], logs(workdir)


@pytest.mark.subprocess
@pytest.mark.slow
@needs_proc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_without_pdeathsig_the_parent_watch_still_stops_the_processes(dsn, client, conn, workdir):
    """The fallback alone: processes that gave PDEATHSIG up notice the killed supervisor by its pid,
    stop gracefully and exit, leaving no job running."""
    enqueue(client, 200)
    (workdir / "watch_only.py").write_text(WATCH_ONLY_SCRIPT)
    env = {**os.environ, "SKIPLOCK_DSN": dsn, "TASK_SECONDS": "0.05", "PYTHONUNBUFFERED": "1"}
    with open(workdir / "supervisor-watch.log", "wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "watch_only.py"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: scalar(conn, "SELECT count(DISTINCT pid) FROM ledger") == 2,
            timeout=60,
            what="both processes running jobs",
        )
        children = descendants(supervisor.pid)
        supervisor.send_signal(signal.SIGKILL)
        assert supervisor.wait(timeout=30) == -signal.SIGKILL
        wait_until(
            lambda: not {p for p in children if alive(p)},
            timeout=60,
            what="every child of the supervisor gone",
        )
    finally:
        stop(supervisor, signal.SIGKILL)
    assert scalar(conn, "SELECT count(*) FROM skiplock.job WHERE state = 'running'") == 0, logs(workdir)
    assert logs(workdir).count(f"the supervisor (pid {supervisor.pid}) is gone: stopping") == 2


@pytest.mark.subprocess
@pytest.mark.slow
def test_run_processes_in_burst_mode_drains_and_returns_0(dsn, client, conn, workdir):
    """The Python API, from a script of one's own: two processes drain the queue, then return 0."""
    ids = enqueue(client, 500)
    (workdir / "run_workers.py").write_text(API_SCRIPT)
    env = {**os.environ, "SKIPLOCK_DSN": dsn}
    done = subprocess.run(
        [sys.executable, "run_workers.py"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "finished its burst" in done.stderr
    assert scalar(conn, "SELECT count(*) FROM ledger") == 500
    done_jobs = scalar(
        conn,
        "SELECT count(DISTINCT id) FROM skiplock.job_history WHERE state = 'completed' AND id = ANY(%s)",
        [ids],
    )
    assert done_jobs == 500


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "Invalid value for '--processes': the number of processes must be at least 1, got 0"),
        ("-2", "Invalid value for '--processes': the number of processes must be at least 1, got -2"),
        ("x", "Invalid value for '--processes': 'x' is not a number of processes nor 'auto'"),
        ("", "Invalid value for '--processes'"),
    ],
)
def test_a_bad_processes_value_is_a_one_line_usage_error(value, says):
    result = CliRunner().invoke(app, ["worker", "some.tasks", "--processes", value])
    assert (result.exit_code, result.stdout) == (2, "")
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert says in lines[0]
    assert lines[0].endswith("--help)")
