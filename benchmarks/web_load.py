"""Is the dashboard cheap to watch? Two measurements against a real `skiplock web` server process.

search: 1,000,000 finished jobs in history (a week of daily partitions, five queues, ten tasks,
2% failed with an error, 1% cancelled) and a live backlog; each job-search first page (and one
next page) fetched over HTTP as a browser would, 30 times per filter: the median and p95 of the
whole response, and the search statement's own time from EXPLAIN ANALYZE. A page looks through
at most SEARCH_WINDOW jobs, so a filter that matches nothing costs that bounded walk.

drain: the same skiplock drain of no-op jobs in a worker process, alternately alone and with a
dashboard open in three tabs refreshing every second (overview and workers every second, health
every five, as their pages poll). Reports jobs/s of each and the ratio.

    python -m benchmarks.web_load [--history N] [--jobs N] [--reps R] [--smoke] [--only search|drain]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from benchmarks import skiplock_system
from benchmarks.common import ROOT, drop_database, fresh_database, run_json, vacuum
from skiplock._sql import QUERIES
from skiplock.web.data import SEARCH_WINDOW

REFRESH_S = 1.0
#: What three open tabs poll: (path, seconds between requests).
TABS = [
    ("/fragment/overview", REFRESH_S),
    ("/fragment/workers", REFRESH_S),
    ("/fragment/health", 5 * REFRESH_S),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def web_server(dsn: str) -> Iterator[tuple[int, int]]:
    """`skiplock web` in its own process (read-only, refreshing every second); yield its port
    and process id."""
    port = _free_port()
    env = {**os.environ, "SKIPLOCK_DSN": dsn}
    with tempfile.TemporaryFile() as log:  # its access log: a pipe nobody reads would fill up
        server = subprocess.Popen(
            [sys.executable, "-m", "skiplock", "web", "--port", str(port), "--refresh", str(REFRESH_S)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(
                            f"skiplock web did not start: {log.read().decode()[-800:]}"
                        ) from None
                    time.sleep(0.05)
            yield port, server.pid
        finally:
            server.terminate()
            server.wait(30)


def _get(conn: http.client.HTTPConnection, path: str) -> float:
    """Fetch ``path`` on a kept-alive connection; the milliseconds the whole response took."""
    start = time.perf_counter()
    try:
        conn.request("GET", path, headers={"accept": "text/html"})
        response = conn.getresponse()
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        conn.close()  # the server closed an idle kept-alive connection: a browser reconnects
        conn.request("GET", path, headers={"accept": "text/html"})
        response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - start) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
    return elapsed


# ---- search ------------------------------------------------------------------------------

QUEUES = 5
TASKS = 10


def seed_history(dsn: str, rows: int, days: int = 7) -> None:
    """``rows`` finished jobs over the last ``days`` days, plus 10,000 available ones."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT count(*) FROM skiplock.ensure_partitions(days_ahead => %s, as_of => now() - make_interval(days => %s))",
            [days + 2, days],
        )
        conn.execute(
            """
            INSERT INTO skiplock.job_history (id, queue, task, args, state, priority, attempt, max_attempts,
                                              run_at, created_at, errors, finished_at)
            SELECT g, 'queue-' || (g %% %(queues)s), 'task-' || (g %% %(tasks)s),
                   jsonb_build_object('customer', g %% 1000, 'order', g),
                   CASE WHEN g %% 100 < 2 THEN 'failed' WHEN g %% 100 = 2 THEN 'cancelled' ELSE 'completed' END
                       ::skiplock.job_state,
                   0, CASE WHEN g %% 100 < 2 THEN 3 ELSE 1 END, 3, x.t, x.t,
                   CASE WHEN g %% 100 < 2 THEN jsonb_build_array(
                       jsonb_build_object('attempt', 3, 'at', x.t, 'error',
                                          'TimeoutError: upstream ' || (g %% 7) || ' did not answer'))
                        ELSE '[]' END,
                   x.t + interval '5 ms'
            FROM generate_series(1, %(rows)s) AS g
            CROSS JOIN LATERAL (
                SELECT now() - make_interval(days => %(days)s) * (1 - g::float8 / %(rows)s) AS t
            ) AS x
            """,
            {"rows": rows, "days": days, "queues": QUEUES, "tasks": TASKS},
        )
        conn.execute("SELECT setval('skiplock.job_id_seq', %s)", [rows])
        conn.execute(
            "SELECT count(*) FROM skiplock.enqueue_many(array_fill('queue-1'::text, ARRAY[10000]),"
            " array_fill('task-1'::text, ARRAY[10000]))"
        )
        conn.execute("VACUUM ANALYZE")


def _filters(now_day_ago: str, two_days_ago: str, three_hours_ago: str) -> list[tuple[str, dict[str, str]]]:
    return [
        ("no filter", {}),
        ("queue", {"queue": "queue-3"}),
        ("queue and task", {"queue": "queue-3", "task": "task-8"}),
        ("state failed (2%)", {"state": "failed"}),
        ("error text", {"error": "upstream 4"}),
        ("args path", {"args_path": "$.customer == 42"}),
        ("until 3 hours ago", {"until": three_hours_ago}),
        ("one day, two days back", {"since": two_days_ago, "until": now_day_ago}),
        ("queue, failed, one day back", {"queue": "queue-1", "state": "failed", "until": now_day_ago}),
        ("matching nothing", {"queue": "queue-2", "state": "failed"}),
    ]


def _statement_ms(dsn: str, form: dict[str, str]) -> float:
    """The search statement's own execution time (EXPLAIN ANALYZE), median of five."""
    params: dict[str, Any] = dict.fromkeys(
        ("queue", "state", "task", "args_path", "error", "since", "until"), None
    )
    params.update(form)
    with psycopg.connect(dsn, autocommit=True) as conn:
        top = conn.execute(
            QUERIES["web_search_top"].text, {"before_id": params.pop("before_id", None)}
        ).fetchone()
        assert top is not None
        params.update(top=top[0], window=SEARCH_WINDOW, limit=51)
        times = []
        for _ in range(5):
            rows = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES["web_search_jobs"].text, params
            ).fetchone()
            assert rows is not None
            plan = rows[0] if not isinstance(rows[0], str) else json.loads(rows[0])
            times.append(float(plan[0]["Execution Time"]))
        return statistics.median(times)


def search(rows: int, tries: int) -> list[dict[str, Any]]:
    name = "skiplock_bench_web_search"
    dsn = fresh_database(name)
    try:
        skiplock_system.setup(dsn)
        seed_history(dsn, rows)
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT to_char(now() - interval '1 day', 'YYYY-MM-DD\"T\"HH24:MI:SSOF'),"
                " to_char(now() - interval '2 days', 'YYYY-MM-DD\"T\"HH24:MI:SSOF'),"
                " to_char(now() - interval '3 hours', 'YYYY-MM-DD\"T\"HH24:MI:SSOF')"
            ).fetchone()
        assert row is not None
        results = []
        with web_server(dsn) as (port, _):
            http_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for label, form in _filters(*row):
                path = "/jobs?" + urllib.parse.urlencode(form)
                _get(http_conn, path)  # the first request opens the pool: not a page a user waits on twice
                first = sorted(_get(http_conn, path) for _ in range(tries))
                results.append(
                    {
                        "filter": label,
                        "first_page_ms": statistics.median(first),
                        "first_page_p95_ms": first[int(len(first) * 0.95) - 1],
                        "statement_ms": _statement_ms(dsn, form),
                    }
                )
            # A later page: keyset pagination from the middle of history.
            form = {"before_id": str(rows // 2)}
            path = "/jobs?" + urllib.parse.urlencode(form)
            later = sorted(_get(http_conn, path) for _ in range(tries))
            results.append(
                {
                    "filter": "a page from the middle (before_id)",
                    "first_page_ms": statistics.median(later),
                    "first_page_p95_ms": later[int(len(later) * 0.95) - 1],
                    "statement_ms": _statement_ms(dsn, form),
                }
            )
            http_conn.close()
        return results
    finally:
        drop_database(name)


# ---- drain -------------------------------------------------------------------------------


def _watch(port: int, stop: threading.Event, request_ms: list[float]) -> None:
    """Poll like three open tabs until ``stop``: one kept-alive connection per tab."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in TABS]
    due = [0.0 for _ in TABS]
    try:
        while not stop.is_set():
            now = time.monotonic()
            for i, (path, every) in enumerate(TABS):
                if now >= due[i]:
                    request_ms.append(_get(conns[i], path))
                    due[i] = now + every
            stop.wait(max(0.0, min(due) - time.monotonic()))
    finally:
        for c in conns:
            c.close()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _dashboard_backends(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'skiplock-web'"
        ).fetchall()
    return [int(r[0]) for r in rows]


def drain(n: int, watched: bool) -> tuple[float, tuple[float, float], list[float]]:
    """Draining ``n`` no-op jobs in a worker process, watched or not: jobs per second, the CPU
    the dashboard used per second of drain (its process and its PostgreSQL backends), and how
    long each fragment request took."""
    name = "skiplock_bench_web_drain"
    dsn = fresh_database(name)
    request_ms: list[float] = []
    try:
        skiplock_system.setup(dsn)
        skiplock_system.batch_enqueue(dsn, n, 1000)
        vacuum(dsn)
        with web_server(dsn) as (port, pid):
            stop = threading.Event()
            watcher = threading.Thread(target=_watch, args=(port, stop, request_ms))
            warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for path, _ in TABS:  # the pages were opened before the drain: the pool is up
                _get(warm, path)
            warm.close()
            backends = {b: _cpu_s(b) for b in _dashboard_backends(dsn)}
            server_cpu = _cpu_s(pid)
            if watched:
                watcher.start()
            try:
                result = run_json([sys.executable, "-m", "benchmarks.drain", "skiplock", dsn, str(n)])
            finally:
                stop.set()
                if watched:
                    watcher.join(60)
            server_used = _cpu_s(pid) - server_cpu
            backends_used = sum(_cpu_s(b) - backends.get(b, 0.0) for b in _dashboard_backends(dsn))
        seconds = float(result["seconds"])
        return n / seconds, (server_used / seconds, backends_used / seconds), request_ms
    finally:
        drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=1_000_000, help="finished jobs for the search")
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs per drain")
    parser.add_argument("--reps", type=int, default=5, help="drains of each kind, interleaved")
    parser.add_argument("--only", choices=["search", "drain"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
    args = parser.parse_args()
    rows, n, reps, tries = (20_000, 2_000, 1, 3) if args.smoke else (args.history, args.jobs, args.reps, 30)
    if args.only != "drain":
        print(f"### job search, {rows:,} finished jobs in history (HTTP, median of {tries})\n")
        print("| filter | first page, ms | p95, ms | the statement alone, ms |")
        print("|---|---|---|---|")
        for r in search(rows, tries):
            print(
                f"| {r['filter']} | {r['first_page_ms']:.1f} | {r['first_page_p95_ms']:.1f} | {r['statement_ms']:.1f} |"
            )
        print()
    if args.only != "search":
        alone, watched, server_cpu, backend_cpu, requests = [], [], [], [], []
        for _ in range(reps):  # interleaved, so drift on the machine hits both alike
            alone.append(drain(n, watched=False)[0])
            rate, (server, backends), ms = drain(n, watched=True)
            watched.append(rate)
            server_cpu.append(server)
            backend_cpu.append(backends)
            requests += ms
        a, w = statistics.median(alone), statistics.median(watched)
        print(
            f"### drain of {n:,} no-op jobs, with a dashboard open in three tabs refreshing every {REFRESH_S:g} s\n"
        )
        print(f"| drain | jobs/s (median of {reps}) | vs alone |")
        print("|---|---|---|")
        print(f"| alone | {a:,.0f} | 1.00× |")
        print(f"| dashboard open | {w:,.0f} | {w / a:.3f}× |")
        print(
            f"\nruns, alone: {', '.join(f'{x:,.0f}' for x in alone)}; open: {', '.join(f'{x:,.0f}' for x in watched)}"
        )
        if requests:
            server, backends = statistics.median(server_cpu), statistics.median(backend_cpu)
            cores = os.cpu_count() or 1
            print(
                f"the open dashboard used {(server + backends) * 1000:.0f} ms of CPU per second of drain"
                f" ({server * 1000:.0f} in its process, {backends * 1000:.0f} in its PostgreSQL backends):"
                f" {(server + backends) / cores:.1%} of this machine's {cores} cores; one fragment request"
                f" took a median {statistics.median(requests):.1f} ms ({len(requests)} made)"
            )


if __name__ == "__main__":
    main()
