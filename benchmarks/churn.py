"""Churn: a steady enqueue rate against one worker for a long time; does the hot table stay small?

``python -m benchmarks.churn [--minutes 30] [--rate 500] [--dsn ADMIN_DSN] [--write-docs]``

A producer enqueues ``rate`` jobs/s (a batch every 100 ms) while a worker child process runs
them (default settings, partition maintenance on). Every ``--every`` seconds it records the
size of ``skiplock.job`` and its indexes, live and dead tuples, autovacuum runs, history size
and WAL bytes per job. The bar it is held to: live table + indexes at the end within 2x of
minute 5. WAL is counted server-wide: run it on a server nothing else writes to for a clean
number (``--dsn`` pointing at a throw-away cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from benchmarks.common import ROOT, environment

SAMPLE_SQL = """
SELECT pg_table_size('skiplock.job') AS table_bytes,
       pg_indexes_size('skiplock.job') AS index_bytes,
       s.n_live_tup AS live_tuples,
       s.n_dead_tup AS dead_tuples,
       s.autovacuum_count AS autovacuums,
       (SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)
          FROM pg_inherits AS i WHERE i.inhparent = 'skiplock.job_history'::regclass) AS history_bytes,
       pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn) AS wal_bytes,
       (SELECT count(*) FROM skiplock.job) AS queued
FROM pg_stat_user_tables AS s
WHERE s.relid = 'skiplock.job'::regclass
"""


def _worker(dsn: str) -> None:
    """Child: run a worker on the churn queue until terminated."""
    import skiplock

    @skiplock.task(queue="churn")
    async def noop(i: int) -> None:
        return None

    asyncio.run(skiplock.AsyncWorker([noop], dsn=dsn, install_signal_handlers=True).run())


async def _produce(
    dsn: str, rate: int, seconds: float, every: float, start_lsn: str, worker: subprocess.Popen[bytes]
) -> list[dict[str, Any]]:
    import skiplock

    samples: list[dict[str, Any]] = []
    per_tick = max(1, rate // 10)
    sent = 0
    async with skiplock.AsyncClient(dsn, max_size=2) as client:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        started = time.monotonic()
        next_sample = started
        tick = 0
        while (now := time.monotonic()) - started < seconds:
            if now >= next_sample:
                if worker.poll() is not None:
                    raise RuntimeError(f"the churn worker exited ({worker.returncode})")
                row = await (await conn.execute(SAMPLE_SQL, [start_lsn])).fetchone()
                assert row is not None
                names = ("table_bytes", "index_bytes", "live_tuples", "dead_tuples", "autovacuums",
                         "history_bytes", "wal_bytes", "queued")  # fmt: skip
                sample = dict(zip(names, (int(v) for v in row), strict=True))
                sample |= {"minute": round((now - started) / 60, 2), "enqueued": sent}
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                next_sample += every
            specs = [
                skiplock.JobSpec(task="noop", args={"i": sent + k}, queue="churn") for k in range(per_tick)
            ]
            await client.enqueue_many(specs)
            sent += per_tick
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * 0.1 - time.monotonic()))
        await conn.close()
    return samples


def summarize(samples: list[dict[str, Any]], rate: int) -> dict[str, Any]:
    """The numbers the bar is judged on."""

    def size(s: dict[str, Any]) -> int:
        return int(s["table_bytes"] + s["index_bytes"])

    at5 = next((s for s in samples if s["minute"] >= 5), samples[min(1, len(samples) - 1)])
    last = samples[-1]
    jobs = max(1, last["enqueued"] - last["queued"])
    return {
        "rate": rate,
        "minutes": last["minute"],
        "hot_bytes_at_5min": size(at5),
        "hot_bytes_at_end": size(last),
        "hot_bytes_max": max(size(s) for s in samples),
        "end_vs_5min": round(size(last) / max(1, size(at5)), 2),
        "max_dead_tuples": max(s["dead_tuples"] for s in samples),
        "autovacuums": last["autovacuums"],
        "wal_bytes_per_job": round(last["wal_bytes"] / jobs),
        "jobs_done": jobs,
    }


def markdown(summary: dict[str, Any], samples: list[dict[str, Any]]) -> str:
    kib = 1024
    lines = [
        f"Steady {summary['rate']} jobs/s for {summary['minutes']:.0f} minutes, {summary['jobs_done']:,} jobs done. "
        f"Hot table + indexes: {summary['hot_bytes_at_5min'] / kib:,.0f} KiB at minute 5, "
        f"{summary['hot_bytes_at_end'] / kib:,.0f} KiB at the end (**{summary['end_vs_5min']}×**, bar ≤ 2×), "
        f"peak {summary['hot_bytes_max'] / kib:,.0f} KiB; at most {summary['max_dead_tuples']:,} dead tuples; "
        f"{summary['autovacuums']} autovacuum runs; **{summary['wal_bytes_per_job']:,} WAL bytes per job** "
        "(enqueue, claim, complete, move to history).",
        "",
        "| minute | table KiB | index KiB | live | dead | autovacuums | history MiB | queued |",
        "|---|---|---|---|---|---|---|---|",
    ]
    step = max(1, len(samples) // 12)
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        lines.append(
            f"| {s['minute']:.1f} | {s['table_bytes'] / kib:,.0f} | {s['index_bytes'] / kib:,.0f} | "
            f"{s['live_tuples']:,} | {s['dead_tuples']:,} | {s['autovacuums']} | "
            f"{s['history_bytes'] / 2**20:,.1f} | {s['queued']:,} |"
        )
    return "\n".join(lines)


def run(admin_dsn: str, minutes: float, rate: int, every: float) -> dict[str, Any]:
    import skiplock

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "skiplock_bench_churn" WITH (FORCE)')
        conn.execute('CREATE DATABASE "skiplock_bench_churn"')
    dsn = make_conninfo(admin_dsn, dbname="skiplock_bench_churn")
    skiplock.Migrator(dsn).up()
    with psycopg.connect(dsn, autocommit=True) as conn:
        start_lsn = str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])  # type: ignore[index]
    worker = subprocess.Popen([sys.executable, "-m", "benchmarks.churn", "--worker", dsn], cwd=ROOT)
    try:
        samples = asyncio.run(_produce(dsn, rate, minutes * 60, every, start_lsn, worker))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "skiplock_bench_churn" WITH (FORCE)')
    return {"summary": summarize(samples, rate), "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.churn", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--every", type=float, default=30, help="seconds between samples")
    parser.add_argument("--dsn", default=None, help="server to run on (default: the benchmark server)")
    parser.add_argument("--smoke", action="store_true", help="20 seconds at 100 jobs/s (CI)")
    parser.add_argument(
        "--write-docs", action="store_true", help="rewrite the churn section of docs/benchmarks.md"
    )
    parser.add_argument("--render", type=Path, help="only render docs from an earlier churn results file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        _worker(options.worker)
        return
    from benchmarks.common import admin_dsn

    if options.render:
        out = options.render
        data = json.loads(out.read_text())
        env = data["environment"]
    else:
        if options.smoke:
            options.minutes, options.rate, options.every = 1 / 3, 100, 5
        data = run(options.dsn or admin_dsn(), options.minutes, options.rate, options.every)
        env = environment()
        out = ROOT / "benchmarks" / "results" / time.strftime("churn-%Y%m%dT%H%M%SZ.json", time.gmtime())
        if not options.smoke:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(data | {"environment": env}, indent=2, default=str))
            print(f"results: {out}")
    report = markdown(data["summary"], data["samples"])
    print(report)
    if options.write_docs:
        page = ROOT / "docs" / "benchmarks.md"
        start, end = "<!-- churn:start -->", "<!-- churn:end -->"
        text = page.read_text()
        block = f"{start}\nMeasured {env['time']}, git {env['git_sha']}.\n\n{report}\n{end}"
        text = (
            text[: text.index(start)] + block + text[text.index(end) + len(end) :] if start in text else text
        )
        Path(page).write_text(text)
        from benchmarks import charts

        for chart in charts.draw(None, out):
            print(f"chart: {chart}")


if __name__ == "__main__":
    main()
