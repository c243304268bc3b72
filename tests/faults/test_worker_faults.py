"""Faults in worker processes: killed, frozen, crashing tasks, shutdown, long jobs, wrong clocks."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from invariants import check

import skiplock
from conftest import Fleet, enqueue, scalar, size
from waiting import wait_until


def test_sigkill_of_a_worker_holding_100_leases(fleet: Fleet, ledger):
    """Pass: a worker holding 100 leased jobs (50 running, 50 prefetched) is SIGKILLed; after the
    2 s lease every one of them runs exactly once more on another worker, none is lost, none
    finalized twice; attempts are 2 for the 100 and 1 for every other job."""
    ids = enqueue(ledger, 300)
    victim = fleet.start(CONCURRENCY=50, PREFETCH=50, LEASE=2, TASK_SECONDS=3600)
    wait_until(lambda: scalar(ledger, "SELECT count(*) FROM ledger") == 50, timeout=60, what="50 running")
    wait_until(
        lambda: scalar(ledger, "SELECT count(*) FROM skiplock.job WHERE state = 'running'") == 100,
        timeout=30,
        what="100 leased",
    )
    leases = dict(ledger.execute("SELECT id, lease_expires_at FROM skiplock.job WHERE state = 'running'"))
    held = set(leases)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL
    rescuer = fleet.start(CONCURRENCY=8, LEASE=2, REAP_INTERVAL=0.5)
    wait_until(lambda: scalar(ledger, "SELECT count(*) FROM skiplock.job") == 0, timeout=120, what="drained")
    assert fleet.stop(rescuer) == 0, fleet.logs()
    report = check(ledger, ids)
    assert report.lease_expired == 100
    attempts = dict(ledger.execute("SELECT id, attempt FROM skiplock.job_history"))
    assert {i for i in ids if attempts[i] == 2} == held
    # The 100 reran once each on the rescuer, after their lease had expired.
    reruns = dict(ledger.execute("SELECT job_id, started FROM ledger WHERE attempt = 2"))
    assert set(reruns) == held
    assert all(reruns[i] > leases[i] for i in held)


def test_a_frozen_worker_past_its_lease_cannot_finalize_or_extend(fleet: Fleet, ledger):
    """Pass: a worker SIGSTOPped while running 4 jobs loses them to the reaper and another worker
    takes them over; when the frozen worker is continued while the new holder still runs them,
    its completions and heartbeats are rejected by the database (the jobs stay running under the
    new holder, which completes them once), and the thawed worker carries on and exits cleanly."""
    ids = enqueue(ledger, 8)
    frozen = fleet.start(CONCURRENCY=4, PREFETCH=0, LEASE=2, TASK_SECONDS=1.5)
    wait_until(lambda: scalar(ledger, "SELECT count(*) FROM ledger") >= 4, timeout=60, what="running")
    frozen.send_signal(signal.SIGSTOP)
    stolen = [
        r[0]
        for r in ledger.execute("SELECT job_id FROM ledger WHERE finished IS NULL AND pid = %s", [frozen.pid])
    ]
    assert len(stolen) == 4
    other = fleet.start(CONCURRENCY=8, PREFETCH=0, LEASE=2, REAP_INTERVAL=0.5, TASK_SECONDS=6)
    wait_until(
        lambda: (
            scalar(ledger, "SELECT count(*) FROM ledger WHERE attempt = 2 AND job_id = ANY(%s)", [stolen])
            == 4
        ),
        timeout=60,
        what="the other worker reaps the frozen worker's jobs and runs them",
    )
    frozen.send_signal(signal.SIGCONT)

    # Its four executions finish at once (their sleep is over) and it reports them, with stale
    # lease tokens: each is refused, which it logs.
    def refused() -> bool:
        lines = "\n".join(line for line in fleet.logs().splitlines() if "lease" in line and "lost" in line)
        return all(re.search(rf"job {i}\b", lines) for i in stolen)

    wait_until(refused, timeout=30, what="the thawed worker's outcomes refused")
    assert (
        scalar(ledger, "SELECT count(*) FROM skiplock.job WHERE id = ANY(%s) AND state = 'running'", [stolen])
        == 4
    )
    wait_until(lambda: scalar(ledger, "SELECT count(*) FROM skiplock.job") == 0, timeout=60, what="drained")
    assert fleet.stop(frozen) == 0, fleet.logs()
    assert fleet.stop(other) == 0, fleet.logs()
    check(ledger, ids)
    finals = dict(ledger.execute("SELECT id, attempt FROM skiplock.job_history WHERE id = ANY(%s)", [stolen]))
    assert set(finals.values()) == {2}  # completed by the second lease holder


@pytest.mark.parametrize("poison", ["exit", "segfault"])
def test_a_poison_pill_only_affects_its_own_job(fleet: Fleet, ledger, poison):
    """Pass: a task that kills its worker process (os._exit, or a segfault) takes down only what
    that process held: a supervisor restarts the worker, the poison job ends `failed` after its 3
    attempts (each a reaped lease), and every other job completes."""
    ids = enqueue(ledger, 200)
    pill = ledger.execute(
        "SELECT id FROM skiplock.enqueue('faults', 'work', jsonb_build_object('i', 0, 'poison', %s::text),"
        " max_attempts => 3)",
        [poison],
    ).fetchone()[0]
    env = {"CONCURRENCY": 4, "PREFETCH": 0, "LEASE": 1, "REAP_INTERVAL": 0.3, "TASK_SECONDS": 0.005}
    procs = [fleet.start(**env), fleet.start(**env)]
    crashes = 0

    def supervised() -> bool:
        nonlocal crashes
        for k, p in enumerate(procs):
            if p.poll() is not None:  # like systemd's Restart=always
                crashes += 1
                procs[k] = fleet.start(**env)
        return scalar(ledger, "SELECT count(*) FROM skiplock.job") == 0

    wait_until(supervised, timeout=120, what="all jobs final")
    # A worker restarted by the last round may still be starting: stop each once it runs (a
    # SIGTERM before its handlers are installed would end it like any Python process).
    pids = [p.pid for p in procs]
    wait_until(
        lambda: (
            scalar(ledger, "SELECT count(DISTINCT pid) FROM skiplock.workers WHERE pid = ANY(%s)", [pids])
            == len(pids)
        ),
        timeout=60,
        what="every worker process running",
    )
    for p in procs:
        assert fleet.stop(p) == 0, fleet.logs()
    assert crashes == 3
    report = check(ledger, [*ids, pill], may_fail={pill})
    assert report.failed == 1
    state, attempt, errors = ledger.execute(
        "SELECT state::text, attempt, errors FROM skiplock.job_history WHERE id = %s", [pill]
    ).fetchone()
    assert (state, attempt) == ("failed", 3)
    assert [e["type"] for e in errors] == ["LeaseExpired"] * 3


def test_graceful_shutdown_acknowledges_finished_and_releases_the_rest(fleet: Fleet, ledger):
    """Pass: SIGTERM with jobs running and prefetched: the running ones finish within the grace
    period and are acknowledged; the prefetched ones are released without spending an attempt;
    a second worker then runs the rest, each job once."""
    ids = enqueue(ledger, 60)
    worker = fleet.start(CONCURRENCY=3, PREFETCH=9, TASK_SECONDS=0.5)
    wait_until(lambda: scalar(ledger, "SELECT count(*) FROM ledger") >= 3, timeout=60, what="running")
    assert fleet.stop(worker) == 0, fleet.logs()
    started = {r[0] for r in ledger.execute("SELECT DISTINCT job_id FROM ledger")}
    states = dict(ledger.execute("SELECT id, state::text || ':' || attempt FROM skiplock.jobs"))
    assert {states[i] for i in started} == {"completed:1"}
    assert {states[i] for i in ids if i not in started} == {"available:0"}
    rest = fleet.start(CONCURRENCY=8, TASK_SECONDS=0)
    wait_until(lambda: scalar(ledger, "SELECT count(*) FROM skiplock.job") == 0, timeout=60, what="drained")
    assert fleet.stop(rest) == 0, fleet.logs()
    report = check(ledger, ids)
    assert report.reruns == 0


def test_heartbeats_keep_long_jobs_for_ten_leases(fleet: Fleet, ledger):
    """Pass: jobs running 10x their 1 s lease are never reaped while their worker heartbeats
    (attempt 1, no LeaseExpired, one execution each), even with an eager reaper beside them."""
    ids = enqueue(ledger, 4)
    worker = fleet.start(CONCURRENCY=4, LEASE=1, REAP_INTERVAL=0.2, TASK_SECONDS=10)
    wait_until(
        lambda: scalar(ledger, "SELECT count(*) FROM ledger") == 4, timeout=60, what="all four running"
    )
    reaper = fleet.start(CONCURRENCY=1, LEASE=1, REAP_INTERVAL=0.2)  # runs no job (none left), reaps
    wait_until(
        lambda: scalar(ledger, "SELECT count(*) FROM skiplock.workers WHERE pid = %s", [reaper.pid]) == 1,
        timeout=60,
        what="the reaper running",
    )
    wait_until(lambda: scalar(ledger, "SELECT count(*) FROM skiplock.job") == 0, timeout=60, what="done")
    assert fleet.stop(worker) == 0, fleet.logs()
    assert fleet.stop(reaper) == 0, fleet.logs()
    report = check(ledger, ids)
    assert (report.executions, report.lease_expired) == (4, 0)


SKEW = """
import time

_offset = float({offset})
_real_time, _real_time_ns = time.time, time.time_ns
time.time = lambda: _real_time() + _offset
time.time_ns = lambda: _real_time_ns() + int(_offset * 1e9)
"""


def test_workers_with_wrong_clocks_behave_like_the_rest(fleet: Fleet, ledger, tmp_path: Path):
    """Pass: two workers whose clocks are 10 minutes ahead and behind (time.time) drain due and delayed jobs and run an every-second schedule together: no
    delayed job or tick runs before its time (database clock), no tick is enqueued twice or
    skipped, no lease is reaped early, every job runs once."""
    due = enqueue(ledger, 200)
    delayed = enqueue(ledger, 50, delays=[timedelta(seconds=3)])
    ledger.execute(
        "SELECT skiplock.upsert_schedule('tick', '* * * * * *', 'work', queue => 'faults', args => '{\"i\": 0}')"
    )
    for name, offset in (("ahead", 600), ("behind", -600)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sitecustomize.py").write_text(SKEW.format(offset=offset))
        shown = subprocess.run(
            [
                sys.executable,
                "-c",
                "import datetime, time; print(time.time() - datetime.datetime.now().timestamp())",
            ],
            env={**os.environ, "PYTHONPATH": _path_with(tmp_path / name)},
            capture_output=True,
            text=True,
            check=True,
        )
        assert abs(float(shown.stdout) - offset) < 1  # the shim is live in interpreters started so
    env = {"CONCURRENCY": 4, "LEASE": 2, "REAP_INTERVAL": 0.3, "TASK_SECONDS": 0.01, "SCHEDULES": 1}
    # The shim goes first on the path; whatever the suite runs with stays behind it.
    procs = [fleet.start(PYTHONPATH=_path_with(tmp_path / name), **env) for name in ("ahead", "behind")]
    wait_until(
        lambda: (
            scalar(ledger, "SELECT count(*) FROM skiplock.jobs WHERE args ->> 'i' = '0'") >= 6
            and scalar(ledger, "SELECT count(*) FROM skiplock.job WHERE args ->> 'i' <> '0'") == 0
        ),
        timeout=120,
        what="jobs drained and ticks fired",
    )
    ledger.execute("SELECT skiplock.pause_schedule('tick')")
    wait_until(lambda: scalar(ledger, "SELECT count(*) FROM skiplock.job") == 0, timeout=60, what="drained")
    for p in procs:
        assert fleet.stop(p) == 0, fleet.logs()
    ticks = [
        r[0] for r in ledger.execute("SELECT id FROM skiplock.jobs WHERE args ->> 'i' = '0' ORDER BY run_at")
    ]
    report = check(ledger, [*due, *delayed, *ticks])
    assert (report.reruns, report.lease_expired) == (0, 0)
    early = scalar(
        ledger,
        "SELECT count(*) FROM ledger AS l JOIN skiplock.job_history AS h ON h.id = l.job_id WHERE l.started < h.run_at",
    )
    assert early == 0
    runs = [
        r[0]
        for r in ledger.execute("SELECT run_at FROM skiplock.jobs WHERE args ->> 'i' = '0' ORDER BY run_at")
    ]
    assert runs == [runs[0] + timedelta(seconds=k) for k in range(len(runs))]  # once each, none skipped
    assert scalar(ledger, "SELECT count(DISTINCT pid) FROM ledger") == 2  # both skewed workers ran jobs


def test_many_jobs_survive_a_worker_killed_over_and_over(fleet: Fleet, ledger):
    """Pass: while a fleet of 3 drains, one worker at a time is SIGKILLed and replaced every time
    it has run a few jobs; in the end every job completed exactly once in history, re-runs only
    where a lease was reaped."""
    ids = enqueue(ledger, size(2_000, 20_000))
    env = {"CONCURRENCY": 8, "LEASE": 1, "REAP_INTERVAL": 0.3, "TASK_SECONDS": 0.002}
    procs = [fleet.start(**env) for _ in range(3)]
    kills = 0
    last = 0

    def churn() -> bool:
        nonlocal kills, last
        ran = scalar(ledger, "SELECT count(*) FROM ledger")
        if ran - last >= 200 and kills < size(5, 30):
            victim = procs[kills % 3]
            victim.send_signal(signal.SIGKILL)
            victim.wait(30)
            procs[kills % 3] = fleet.start(**env)
            kills += 1
            last = ran
        return scalar(ledger, "SELECT count(*) FROM skiplock.job") == 0

    wait_until(churn, timeout=size(120, 1200), interval=0.05, what="drained through the kills")
    for p in procs:
        assert fleet.stop(p) == 0, fleet.logs()
    report = check(ledger, ids)
    assert kills == size(5, 30)
    assert report.reruns <= report.lease_expired


def _path_with(first: Path) -> str:
    return os.pathsep.join(filter(None, [str(first), os.environ.get("PYTHONPATH", "")]))


#: Calls that read the wall clock: (object name, attribute).
WALL_CLOCK = {("time", "time"), ("time", "time_ns"), ("datetime", "now"), ("datetime", "utcnow"),
              ("datetime", "today"), ("date", "today")}  # fmt: skip


def test_the_library_never_reads_the_wall_clock():
    """Pass: no module of skiplock calls time.time(), datetime.now() or the like: job states
    depend on the database clock only (the worker times its own waits with the monotonic loop
    clock), which is what makes the skew scenario above hold for any clock, not just time.time."""
    src = Path(skiplock.__file__).parent
    offenders = []
    for path in sorted(src.rglob("*.py")):
        if path.name == "demo.py":  # the demo's elapsed-time display uses time.monotonic
            continue
        for node in ast.walk(ast.parse(path.read_text())):  # calls only: docstrings may show examples
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and (node.func.value.id, node.func.attr) in WALL_CLOCK
            ):
                offenders.append(f"{path.relative_to(src)}:{node.lineno}")
    assert offenders == []
