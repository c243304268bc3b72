"""Pickup and drain while something holds the xmin horizon back.

A steady stream of single enqueues (400 jobs/s, one transaction each) runs against one worker (skiplock
with default settings; PGQueuer and graphile-worker as in the other benchmarks), with a burst of 20,000
jobs every 5 minutes; the systems run one after the other, each on a database of its own. After a baseline, a second session
holds the horizon — a ``REPEATABLE READ`` transaction left idle after one read (``snapshot``), a
``pg_dump`` whose output nobody reads (``pg_dump``), or a logical replication slot nobody consumes
(``slot``) — for 30 minutes, then lets go. Every 10 seconds the run records pickup latency (from an
enqueue being sent to its task's start, on one machine's clock, as the latency benchmark measures it),
completions per second, the hot table's size with its indexes, its dead tuples and the claim's mean
time (from ``pg_stat_statements``); every burst, how fast it drained.

It runs on a throw-away cluster of the machine's PostgreSQL (``pg_createcluster`` on another
port, the server's default settings, durable commits), never on the shared one, and drops it at
the end. ``--autovacuum off`` turns autovacuum off on it (the shared CI server runs without it)::

    python -m benchmarks.long_tx                      # 60 s baseline, 30 min hold, 2 min after
    python -m benchmarks.long_tx --holder pg_dump --hold 600
    python -m benchmarks.long_tx --systems skiplock --hold 600
    python -m benchmarks.long_tx --smoke              # 30 seconds a system, to check that it runs

The report is markdown on stdout (and JSON with ``--json FILE``), with the issue's bars checked
window by window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg

from benchmarks.common import ROOT

CLUSTER = "skiplock_longtx"
VERSION = "15"
WINDOW_S = 10.0
LANES = 8  # concurrent producers of the steady stream


# -- the throw-away cluster ---------------------------------------------------------------------


@contextlib.contextmanager
def cluster(port: int, *, autovacuum: bool, logical: bool) -> Iterator[str]:
    """A fresh cluster of the machine's PostgreSQL on ``port``; yields its admin DSN."""
    subprocess.run(["pg_dropcluster", "--stop", VERSION, CLUSTER], capture_output=True, check=False)
    settings = [
        "-o", "shared_preload_libraries=pg_stat_statements",
        "-o", f"autovacuum={'on' if autovacuum else 'off'}",
        "-o", "max_connections=200",
    ]  # fmt: skip
    if logical:
        settings += ["-o", "wal_level=logical"]
    made = subprocess.run(
        ["pg_createcluster", "-p", str(port), "--start", *settings, VERSION, CLUSTER, "--", "--auth=trust"],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        subprocess.run(["pg_dropcluster", "--stop", VERSION, CLUSTER], capture_output=True, check=False)
        raise SystemExit(f"pg_createcluster failed: {(made.stderr or made.stdout).strip().splitlines()[-1:]}")
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run(["pg_dropcluster", "--stop", VERSION, CLUSTER], capture_output=True, check=False)


def fresh_database(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = admin.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return dsn


# -- the systems ---------------------------------------------------------------------------------
#
# Each system is measured the same way: its worker runs in a child process that reports, every
# 100 ms on its stdout, each steady job's start (`s <i> <epoch>`) and how many burst jobs started
# (`b <n> <epoch>`). Pickup is a steady job's start minus the time its enqueue was sent (one
# machine's clock; the enqueue's own commit counts, as it does for the caller); completions per
# second are the jobs started in a window (the tasks are no-ops); a burst has drained when all of
# its jobs have started.


class Events:
    """What a worker child reports, read on a thread of the parent."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.steady: list[tuple[float, int]] = []  # (start, i)
        self.bursts: list[tuple[float, int]] = []  # (report time, jobs started)
        self.burst_started = 0
        self.warm = threading.Event()  # the warm-up job (i = -1) ran: the worker is up
        self._taken = (0, 0)
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                kind, n, at = line.split()
                number, when = int(n), float(at)
            except ValueError:  # not a report: whatever else a worker prints
                continue
            if kind == b"s":
                if number < 0:
                    self.warm.set()
                else:
                    self.steady.append((when, number))
            elif kind == b"b":
                self.bursts.append((when, number))
                self.burst_started += number

    def take(self) -> tuple[list[tuple[float, int]], int]:
        """The steady starts and the number of burst starts reported since the last take."""
        s, b = len(self.steady), len(self.bursts)
        steady, bursts = self.steady[self._taken[0] : s], self.bursts[self._taken[1] : b]
        self._taken = (s, b)
        return steady, sum(n for _, n in bursts)


class Skiplock:
    name = "skiplock"
    hot = "skiplock.job"  # the table every claim and completion churns
    dump = "skiplock.job_history*"  # what --holder pg_dump reads
    claim_like = "%skiplock.claim(%"  # how pg_stat_statements spells its claim

    def __init__(self, dsn: str) -> None:
        import skiplock
        from skiplock.migrate import Migrator

        self.dsn = dsn
        Migrator(dsn).up()
        self.client = skiplock.AsyncClient(dsn, max_size=LANES + 1)

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    def worker(self, log: Any) -> subprocess.Popen[bytes]:
        return _python_worker("skiplock", self.dsn, log)

    async def enqueue(self, i: int) -> None:
        await self.client.enqueue("steady", {"i": i}, queue="bench")

    async def burst(self, n: int, tag: int) -> None:
        import skiplock

        specs = [skiplock.JobSpec(task="burst", args={"i": i, "burst": tag}, queue="bulk") for i in range(n)]
        await self.client.enqueue_many(specs)


class PGQueuer:
    """PGQueuer 1.x on asyncpg, its worker with batch_size=500 (as in the drain benchmark)."""

    name = "pgqueuer"
    hot = "pgqueuer"
    dump = "pgqueuer_log"
    claim_like = "%skip locked%"  # its dequeue; the only statement of the database that skips locks

    def __init__(self, dsn: str) -> None:
        from benchmarks import pgqueuer_system

        self.dsn = dsn
        self.setup = pgqueuer_system.setup
        self.lanes: list[Any] = []

    async def open(self) -> None:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        from benchmarks.common import as_url

        await asyncio.to_thread(self.setup, self.dsn)  # its own event loop, on a thread
        # One connection per lane (an asyncpg connection runs one statement at a time), one for bursts.
        self.conns = [await asyncpg.connect(as_url(self.dsn)) for _ in range(LANES + 1)]
        self.lanes = [Queries(AsyncpgDriver(c)) for c in self.conns]

    async def close(self) -> None:
        for c in self.conns:
            await c.close()

    def worker(self, log: Any) -> subprocess.Popen[bytes]:
        return _python_worker("pgqueuer", self.dsn, log)

    async def enqueue(self, i: int) -> None:
        await self.lanes[i % LANES].enqueue("steady", b'{"i": %d}' % i, 0)

    async def burst(self, n: int, tag: int) -> None:
        payloads = [b'{"i": %d, "burst": %d}' % (i, tag) for i in range(n)]
        await self.lanes[LANES].enqueue(["burst"] * n, payloads, [0] * n)


class Graphile:
    """graphile-worker 0.17.3 (Node), run() with the settings of its performance docs (as in
    the other benchmarks); jobs added through its SQL API (add_job, add_jobs)."""

    name = "graphile-worker"
    hot = "graphile_worker._private_jobs"
    dump = "graphile_worker._private_jobs"  # it keeps no history
    claim_like = "%skip locked%"  # its get_job

    def __init__(self, dsn: str) -> None:
        from benchmarks import graphile_system
        from benchmarks.common import as_url

        self.dsn, self.url = dsn, as_url(dsn)
        self.script = graphile_system.HERE / "bench.mjs"
        self.setup = graphile_system.setup
        self.lanes: list[psycopg.AsyncConnection[Any]] = []

    async def open(self) -> None:
        await asyncio.to_thread(self.setup, self.dsn)  # installs its schema
        self.lanes = [
            await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) for _ in range(LANES + 1)
        ]

    async def close(self) -> None:
        for c in self.lanes:
            await c.close()

    def worker(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["node", str(self.script), self.url, "stream"], stdout=subprocess.PIPE, stderr=log, cwd=ROOT
        )

    async def enqueue(self, i: int) -> None:
        await self.lanes[i % LANES].execute(
            "SELECT graphile_worker.add_job('steady', json_build_object('i', %s::int))", [i]
        )

    async def burst(self, n: int, tag: int) -> None:
        await self.lanes[LANES].execute(
            "SELECT graphile_worker.add_jobs(ARRAY(SELECT ROW('burst', json_build_object('i', g, 'burst', %s::int),"
            " NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec FROM generate_series(1, %s::int) AS g))",
            [tag, n],
        )


SYSTEMS: dict[str, Any] = {"skiplock": Skiplock, "pgqueuer": PGQueuer, "graphile-worker": Graphile}


def _unavailable(system: str) -> str | None:
    """Why ``system`` cannot run here, or None."""
    if system not in SYSTEMS:
        raise SystemExit(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    if system == "pgqueuer":
        from benchmarks import pgqueuer_system

        return pgqueuer_system.available()
    if system == "graphile-worker":
        from benchmarks import graphile_system

        return graphile_system.available()
    return None


def _python_worker(system: str, dsn: str, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.long_tx", "worker", system, dsn],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
    )


class Reporter:
    """The child's side of :class:`Events`: tasks note their starts, a thread writes them out
    every 100 ms (list appends and slice deletes are atomic, so tasks on threads may call it)."""

    def __init__(self) -> None:
        self._steady: list[str] = []
        self._bursts: list[None] = []
        threading.Thread(target=self._flush, daemon=True).start()

    def steady(self, i: int) -> None:
        self._steady.append(f"s {i} {time.time():.6f}\n")

    def burst(self) -> None:
        self._bursts.append(None)

    def _flush(self) -> None:
        out = sys.stdout.buffer
        while True:
            time.sleep(0.1)
            lines, n = len(self._steady), len(self._bursts)
            text = "".join(self._steady[:lines])
            del self._steady[:lines]
            del self._bursts[:n]
            if n:
                text += f"b {n} {time.time():.6f}\n"
            if text:
                out.write(text.encode())
                out.flush()


def run_worker(system: str, dsn: str) -> None:
    """Child process: one worker of ``system`` until SIGTERM; skiplock with default settings and
    no-op `def` tasks (what most users write)."""
    report = Reporter()
    if system == "skiplock":
        import skiplock

        @skiplock.task(queue="bench")
        def steady(i: int) -> None:
            report.steady(i)

        @skiplock.task(queue="bulk")
        def burst(i: int, burst: int) -> None:
            report.burst()

        # The steady queue first: a burst uses the worker's spare capacity, as a batch import would.
        skiplock.Worker(
            [steady, burst], dsn=dsn, queues=["bench", "bulk"], install_signal_handlers=True
        ).run()
    elif system == "pgqueuer":
        asyncio.run(_pgqueuer_worker(dsn, report))
    else:
        raise SystemExit(f"unknown system {system}")


async def _pgqueuer_worker(dsn: str, report: Reporter) -> None:
    import signal

    import asyncpg
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver

    from benchmarks.common import as_url
    from benchmarks.pgqueuer_system import BATCH_SIZE

    conn = await asyncpg.connect(as_url(dsn))
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("steady")
    async def steady(job: Any) -> None:
        report.steady(json.loads(job.payload)["i"])

    @pgq.entrypoint("burst")
    async def burst(job: Any) -> None:
        report.burst()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
    try:
        await pgq.run(batch_size=BATCH_SIZE)
    finally:
        await conn.close()


# -- holders of the horizon ----------------------------------------------------------------------


class Holder:
    """Holds the xmin horizon of ``dsn``'s database from ``start()`` until ``stop()``."""

    def __init__(self, kind: str, dsn: str, table: str, dump: str) -> None:
        self.kind, self.dsn, self.table, self.dump = kind, dsn, table, dump
        self._conn: psycopg.Connection[Any] | None = None
        self._dump: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.kind == "snapshot":
            self._conn = psycopg.connect(self.dsn, application_name="analyst")
            self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            self._conn.execute(f"SELECT count(*) FROM {self.table}")
        elif self.kind == "slot":
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_create_logical_replication_slot('longtx', 'test_decoding')")
        elif self.kind == "pg_dump":
            # Its output is read by nobody: it blocks on a full pipe, inside its snapshot.
            self._dump = subprocess.Popen(
                ["pg_dump", "--dbname", self.dsn, "--data-only", "--table", self.dump],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        else:
            raise SystemExit(f"unknown holder {self.kind}")

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.commit()
            self._conn.close()
        if self.kind == "slot":
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_drop_replication_slot('longtx')")
        if self._dump is not None:
            self._dump.kill()
            self._dump.wait()


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Window:
    t: float  # seconds since the start, at the window's end
    phase: str  # baseline | hold | after
    completions_per_s: float
    pickup_p50_ms: float | None
    pickup_p99_ms: float | None
    hot_mib: float
    dead_tuples: int
    claim_ms: float | None


@dataclass
class Burst:
    t: float
    phase: str
    jobs: int
    seconds: float | None = None

    @property
    def rate(self) -> float | None:
        return None if not self.seconds else self.jobs / self.seconds


@dataclass
class Run:
    system: str
    holder: str
    autovacuum: bool
    rate: int
    windows: list[Window] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)


def _hot(conn: psycopg.Connection[Any], table: str) -> tuple[float, int]:
    row = conn.execute(
        "SELECT pg_total_relation_size(%s::regclass), coalesce(n_dead_tup, 0)"
        " FROM pg_stat_user_tables WHERE relid = %s::regclass",
        [table, table],
    ).fetchone()
    return (row[0] / 2**20, int(row[1])) if row else (0.0, 0)


def _claim_stats(conn: psycopg.Connection[Any], like: str) -> tuple[float, int]:
    row = conn.execute(
        "SELECT coalesce(sum(total_exec_time), 0), coalesce(sum(calls), 0) FROM pg_stat_statements"
        " WHERE query ILIKE %s AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        [like],
    ).fetchone()
    return (float(row[0]), int(row[1])) if row else (0.0, 0)


async def run(system_name: str, dsn: str, args: argparse.Namespace) -> Run:
    system = SYSTEMS[system_name](dsn)
    await system.open()
    result = Run(system_name, args.holder, args.autovacuum == "on", args.rate)
    holder = Holder(args.holder, dsn, system.hot, system.dump)
    worker_log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    worker = system.worker(worker_log)
    assert worker.stdout is not None
    events = Events(worker.stdout)
    sampler = psycopg.connect(dsn, autocommit=True, application_name="sampler")
    stop = asyncio.Event()
    sent: dict[int, float] = {}
    await system.enqueue(-1)  # the warm-up job: once it has run, the worker is up
    if not await asyncio.to_thread(events.warm.wait, 120):
        raise SystemExit(f"the {system_name} worker did not start (exit status {worker.poll()})")
    t0 = time.time()
    hold_at, release_at, end_at = (
        t0 + args.baseline,
        t0 + args.baseline + args.hold,
        t0 + args.baseline + args.hold + args.after,
    )

    def phase(t: float) -> str:
        return "baseline" if t < hold_at else "hold" if t < release_at else "after"

    async def steady(lane: int, lanes: int) -> None:
        # One of `lanes` producers, each on its own connection: one commit at a time could not
        # offer 400 a second. Job i is due at t0 + i/rate; late ones go at once.
        i = lane
        while not stop.is_set():
            delay = t0 + i / args.rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[i] = time.time()
            await system.enqueue(i)
            i += lanes

    async def bursts() -> None:
        tag = 0
        next_at = t0 + args.burst_every / 2
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.time()))
            if stop.is_set():
                return
            tag += 1
            burst = Burst(time.time() - t0, phase(time.time()), args.burst)
            result.bursts.append(burst)
            started = time.time()
            await system.burst(args.burst, tag)
            # The child's reports arrive on a thread: there is no event to await.
            while events.burst_started < tag * args.burst and not stop.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            if not stop.is_set():
                burst.seconds = time.time() - started
            next_at += args.burst_every

    async def windows() -> None:
        held = False
        last = time.time()
        claim_before = _claim_stats(sampler, system.claim_like)
        while True:
            await asyncio.sleep(max(0.0, last + WINDOW_S - time.time()))
            now = time.time()
            if not held and now >= hold_at and args.hold:
                holder.start()
                held = True
            elif held and now >= release_at:
                holder.stop()
                held = False
            steady, bursts = events.take()
            pickups = sorted((t - sent[i]) * 1000 for t, i in steady if i in sent)
            # Off the event loop: the steady enqueues go on meanwhile.
            mib, dead = await asyncio.to_thread(_hot, sampler, system.hot)
            claim_now = await asyncio.to_thread(_claim_stats, sampler, system.claim_like)
            calls = claim_now[1] - claim_before[1]
            claim_ms = (claim_now[0] - claim_before[0]) / calls if calls else None
            claim_before = claim_now
            result.windows.append(
                Window(
                    t=round(now - t0, 1),
                    phase=phase(last),
                    hot_mib=mib,
                    dead_tuples=dead,
                    claim_ms=claim_ms,
                    completions_per_s=(len(steady) + bursts) / (now - last),
                    pickup_p50_ms=_quantile(pickups, 0.5),
                    pickup_p99_ms=_quantile(pickups, 0.99),
                )
            )
            print(_line(result.windows[-1]), file=sys.stderr, flush=True)
            last = now
            if now >= end_at:
                if held:
                    holder.stop()
                return

    tasks = [*(asyncio.create_task(steady(k, LANES)) for k in range(LANES)), asyncio.create_task(bursts())]
    try:
        await windows()
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        worker.terminate()
        code = worker.wait(60)
        if code not in (0, -15) or not any(w.completions_per_s for w in result.windows):
            worker_log.seek(0)
            tail = worker_log.read().decode(errors="replace").splitlines()[-15:]
            print(f"the {system_name} worker exited {code}:", *tail, sep="\n  ", file=sys.stderr)
        worker_log.close()
        sampler.close()
        await system.close()
    return result


def _quantile(ordered: list[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def _line(w: Window) -> str:
    p99 = "-" if w.pickup_p99_ms is None else f"{w.pickup_p99_ms:.1f}"
    claim = "-" if w.claim_ms is None else f"{w.claim_ms:.2f}"
    return (
        f"t={w.t:7.1f}s {w.phase:8} done/s={w.completions_per_s:7.0f} p99={p99:>7} ms"
        f" hot={w.hot_mib:6.1f} MiB dead={w.dead_tuples:8} claim={claim} ms"
    )


# -- the report ---------------------------------------------------------------------------------


def verdict(r: Run) -> dict[str, Any]:
    """The issue's bars, window by window."""
    base = [w for w in r.windows if w.phase == "baseline"]
    base = base[1:] if len(base) > 1 else base  # the first window warms up
    hold = [w for w in r.windows if w.phase == "hold"]
    after = [w for w in r.windows if w.phase == "after"]
    p99s = [w.pickup_p99_ms for w in base if w.pickup_p99_ms is not None]
    base_p99 = statistics.median(p99s) if p99s else None
    base_mib = statistics.median([w.hot_mib for w in base]) if base else None
    base_bursts = [b.rate for b in r.bursts if b.phase == "baseline" and b.rate]
    base_burst = statistics.median(base_bursts) if base_bursts else None
    worst_p99 = max((w.pickup_p99_ms or 0.0 for w in hold), default=None)
    min_done = min((w.completions_per_s for w in hold), default=None)
    max_mib = max((w.hot_mib for w in hold), default=None)
    hold_bursts = [b.rate for b in r.bursts if b.phase == "hold" and b.rate]
    out: dict[str, Any] = {
        "baseline_p99_ms": base_p99,
        "worst_hold_p99_ms": worst_p99,
        "p99_bar_ms": None if base_p99 is None else 2 * base_p99 + 5,
        "min_hold_completions_per_s": min_done,
        "baseline_mib": base_mib,
        "max_hold_mib": max_mib,
        "baseline_burst_per_s": base_burst,
        "min_hold_burst_per_s": min(hold_bursts) if hold_bursts else None,
    }
    out["p99_ok"] = None if base_p99 is None or worst_p99 is None else worst_p99 <= 2 * base_p99 + 5
    # Completions keep up: the offered rate, less 5% for a window's edges.
    out["keeps_up"] = None if min_done is None else min_done >= 0.95 * r.rate
    out["size_ok"] = None if base_mib is None or max_mib is None else max_mib <= 2 * base_mib
    out["burst_ok"] = None if base_burst is None or not hold_bursts else min(hold_bursts) >= 0.8 * base_burst
    recovered = [w for w in after if w.t - (after[0].t if after else 0) >= 60]
    out["recovered"] = (
        None
        if not recovered or base_p99 is None or base_mib is None
        else all((w.pickup_p99_ms or 0) <= 2 * base_p99 + 5 and w.hot_mib <= 2 * base_mib for w in recovered)
    )
    return out


def markdown(runs: list[Run], args: argparse.Namespace) -> str:
    lines = [
        f"### {args.rate} jobs/s, a {args.burst:,}-job burst every {args.burst_every:g} s;"
        f" horizon held by `{args.holder}` for {args.hold:g} s; autovacuum {args.autovacuum}\n",
        "| system | baseline p99 | worst p99 in the hold (bar) | fewest done/s in the hold | hot table MiB:"
        " baseline → worst | burst jobs/s: baseline → worst | back within 60 s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        v = verdict(r)

        def num(x: float | None, fmt: str = "{:.1f}") -> str:
            return "-" if x is None else fmt.format(x)

        def ok(flag: bool | None) -> str:
            return "" if flag is None else (" ✓" if flag else " ✗")

        lines.append(
            f"| {r.system} | {num(v['baseline_p99_ms'])} ms | {num(v['worst_hold_p99_ms'])} ms"
            f" ({num(v['p99_bar_ms'])}){ok(v['p99_ok'])} | {num(v['min_hold_completions_per_s'], '{:.0f}')}"
            f"{ok(v['keeps_up'])} | {num(v['baseline_mib'])} → {num(v['max_hold_mib'])}{ok(v['size_ok'])}"
            f" | {num(v['baseline_burst_per_s'], '{:,.0f}')} → {num(v['min_hold_burst_per_s'], '{:,.0f}')}"
            f"{ok(v['burst_ok'])} | {ok(v['recovered']).strip() or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "worker":
        run_worker(sys.argv[2], sys.argv[3])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, run one after the other")
    p.add_argument("--holder", choices=["snapshot", "pg_dump", "slot"], default="snapshot")
    p.add_argument("--autovacuum", choices=["on", "off"], default="on")
    p.add_argument("--rate", type=int, default=400, help="steady single enqueues per second")
    p.add_argument("--burst", type=int, default=20_000, help="jobs per burst")
    p.add_argument("--burst-every", type=float, default=300.0, help="seconds between bursts")
    p.add_argument("--baseline", type=float, default=60.0)
    p.add_argument("--hold", type=float, default=1800.0)
    p.add_argument("--after", type=float, default=120.0)
    p.add_argument("--port", type=int, default=5499)
    p.add_argument("--json", type=Path)
    p.add_argument("--smoke", action="store_true", help="30 seconds at small sizes, to check it runs")
    args = p.parse_args()
    if args.smoke:
        args.rate, args.burst, args.burst_every = 100, 500, 10.0
        args.baseline, args.hold, args.after = 10.0, 10.0, 10.0
    runs = []
    with cluster(args.port, autovacuum=args.autovacuum == "on", logical=args.holder == "slot") as admin:
        for name in args.systems.split(","):
            if why := _unavailable(name):
                print(f"{name}: skipped, {why}", file=sys.stderr)
                continue
            dsn = fresh_database(admin, f"longtx_{name.replace('-', '_')}")
            runs.append(asyncio.run(run(name, dsn, args)))
    print(markdown(runs, args))
    if args.json:
        args.json.write_text(
            json.dumps([{**asdict(r), "verdict": verdict(r)} for r in runs], indent=1, default=str)
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
