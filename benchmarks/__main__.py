"""Run the benchmarks: ``python -m benchmarks [--smoke] [--reps N] [--only W,...] [--write-docs]``.

Every system gets its own database on one server; systems run in a rotating order on each
repetition (the machine is noisy); each number is the median of the repetitions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import (
    bullmq_system,
    graphile_system,
    latency,
    pgqueuer_system,
    procrastinate_system,
    raw,
    skiplock_system,
)
from benchmarks.common import (
    ROOT,
    Measurement,
    drop_database,
    environment,
    fresh_database,
    markdown,
    run_children,
    timed,
    to_json,
    vacuum,
)

WORKLOADS = ("enqueue", "drain", "latency", "backlog", "history")

FULL: dict[str, int] = {
    "batch_jobs": 100_000,
    "batch_size": 1_000,
    "single_jobs": 3_000,
    "drain_jobs": 100_000,
    "latency_rate": 500,
    "latency_jobs": 10_000,
    "idle_rate": 10,
    "idle_jobs": 200,
    "backlog_small": 10_000,
    "backlog_large": 1_000_000,
    "history_rows": 10_000_000,
    "history_drain": 100_000,
}
SMOKE: dict[str, int] = {
    "batch_jobs": 2_000,
    "batch_size": 500,
    "single_jobs": 50,
    "drain_jobs": 2_000,
    "latency_rate": 200,
    "latency_jobs": 200,
    "idle_rate": 20,
    "idle_jobs": 20,
    "backlog_small": 500,
    "backlog_large": 5_000,
    "history_rows": 20_000,
    "history_drain": 2_000,
}
#: Sizes that are rates or batch shapes, not job counts: --scale leaves them alone.
UNSCALED = {"batch_size", "latency_rate", "idle_rate"}
#: Systems that drain at ~1k jobs/s here drain a tenth of the jobs (rates compare) and sit out
#: the 1M backlog.
SLOW_DRAIN = {"Procrastinate": 0.1, "BullMQ (PostgreSQL)": 0.1}


@dataclass
class System:
    """One system under test: its adapter module and what it takes part in."""

    name: str
    key: str  # the name the drain and latency children know it by
    module: Any  # an adapter module (or object): setup, reset, batch_enqueue, single_enqueue, ...
    batch: Callable[[str, int, int], float | None]  # may return its own timing (Node: no start-up)
    single: Callable[[str, int], float | None] | None
    todo: Callable[[str], int] | None  # counts jobs not yet done; None: it does not drain
    dsn: str = ""
    only: frozenset[str] | None = None  # the workloads it takes part in; None: all it can

    @property
    def external(self) -> bool:
        """Runs in its own runtime (Node) and measures its own drains and latency."""
        return bool(getattr(self.module, "EXTERNAL", False))

    def takes_part(self, workload: str) -> bool:
        return self.only is None or workload in self.only

    @property
    def dbname(self) -> str:
        return "skiplock_bench_" + "".join(c for c in self.name.lower() if c.isalnum())


def systems() -> tuple[list[System], dict[str, str]]:
    """The systems that can run here, and why any others cannot."""
    found = [
        System("raw INSERT", "raw", raw, raw.batch_insert, raw.single_insert, _count("SELECT count(*) FROM raw_job")),
        System("raw COPY", "raw", raw, raw.batch_copy, None, None),
        System("skiplock", "skiplock", skiplock_system, skiplock_system.batch_enqueue,
               skiplock_system.single_enqueue, _count("SELECT count(*) FROM skiplock.job")),
        # enqueue_many through COPY into the session's staging table (not the client's default).
        System("skiplock (COPY path)", "skiplock", skiplock_system, skiplock_system.batch_enqueue_copy, None,
               None, only=frozenset({"enqueue"})),
        # What most users write: a plain `def` task, run in the worker's threads.
        System("skiplock (def task)", "skiplock-def", skiplock_system, skiplock_system.batch_enqueue, None,
               _count("SELECT count(*) FROM skiplock.job"), only=frozenset({"drain"})),
    ]  # fmt: skip
    skipped: dict[str, str] = {}
    peers: list[tuple[str, str, Any, Callable[[str], int]]] = [
        ("graphile-worker", "graphile", graphile_system, graphile_system.todo),
        ("PGQueuer", "pgqueuer", pgqueuer_system, _count("SELECT count(*) FROM pgqueuer")),
        ("Procrastinate", "procrastinate", procrastinate_system,
         _count("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')")),
        ("BullMQ (Redis)", "bullmq-redis", bullmq_system.REDIS, bullmq_system.REDIS.todo),
        ("BullMQ (PostgreSQL)", "bullmq-pg", bullmq_system.POSTGRES, bullmq_system.POSTGRES.todo),
    ]  # fmt: skip
    for name, key, module, todo in peers:
        reason = module.available()
        if reason is None:
            found.append(System(name, key, module, module.batch_enqueue, module.single_enqueue, todo))
        else:
            skipped[name] = reason
    return found, skipped


def _count(sql: str) -> Callable[[str], int]:
    def todo(dsn: str) -> int:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]

    return todo


class Runner:
    """Runs the chosen workloads and collects one Measurement per workload and system."""

    def __init__(self, sizes: dict[str, int], reps: int, chosen: list[System]) -> None:
        self.sizes, self.reps, self.systems = sizes, reps, chosen
        self.results: dict[tuple[str, str], Measurement] = {}

    def record(self, workload: str, system: str, unit: str, value: float, **extra: float) -> Measurement:
        m = self.results.setdefault((workload, system), Measurement(workload, system, unit))
        m.samples.append(value)
        for k, v in extra.items():
            m.extra.setdefault(k, []).append(v)
        return m

    def rotations(self, group: list[System]) -> list[list[System]]:
        return [group[r % len(group) :] + group[: r % len(group)] for r in range(self.reps)]

    def drain_size(self, system: System, n: int) -> int:
        return max(1, int(n * SLOW_DRAIN.get(system.name, 1.0)))

    def fill(self, system: System, n: int) -> None:
        system.module.reset(system.dsn)
        system.batch(system.dsn, n, 1_000)
        vacuum(system.dsn)

    def drain(self, system: System, n: int, processes: int = 1, rss_every: int = 0) -> dict[str, Any]:
        """Drain ``n`` queued jobs with worker child processes; return the slowest child's numbers."""
        if system.external:
            with ThreadPoolExecutor(processes) as pool:
                outs = list(pool.map(lambda _: system.module.drain(system.dsn), range(processes)))
        else:
            outs = run_children(
                "drain",
                [[system.key, system.dsn, str(n if processes == 1 else 0), str(rss_every)]] * processes,
            )
        assert system.todo is not None
        left = system.todo(system.dsn)
        if left:
            raise RuntimeError(f"{system.name} left {left} jobs undrained")
        slowest = max(outs, key=lambda o: o["seconds"])
        slowest["cpu_seconds"] = sum(o["cpu_seconds"] for o in outs)
        return slowest

    # -- workloads ---------------------------------------------------------------------------

    def enqueue(self) -> None:
        s = self.sizes
        batch_label = f"batch enqueue: {s['batch_jobs']:,} jobs in batches of {s['batch_size']:,}"
        single_label = f"single-job enqueue, one transaction each ({s['single_jobs']:,} jobs)"
        for order in self.rotations([x for x in self.systems if x.takes_part("enqueue")]):
            for system in order:
                system.module.reset(system.dsn)
                vacuum(system.dsn)
                seconds = timed(lambda x=system: x.batch(x.dsn, s["batch_jobs"], s["batch_size"]))
                self.record(batch_label, system.name, "jobs/s", s["batch_jobs"] / seconds)
                if system.single is not None:
                    single = system.single
                    system.module.reset(system.dsn)
                    vacuum(system.dsn)
                    seconds = timed(lambda f=single, d=system.dsn: f(d, s["single_jobs"]))
                    self.record(single_label, system.name, "jobs/s", s["single_jobs"] / seconds)

    def drains(self) -> None:
        draining = [x for x in self.systems if x.todo and x.takes_part("drain")]
        for processes in (1, 2):
            label = (
                f"drain {self.sizes['drain_jobs']:,} no-op jobs, {processes} worker "
                f"process{'es' if processes > 1 else ''}"
            )
            for order in self.rotations(draining):
                for system in order:
                    n = self.drain_size(system, self.sizes["drain_jobs"])
                    self.fill(system, n)
                    out = self.drain(system, n, processes)
                    m = self.record(label, system.name, "jobs/s", n / out["seconds"],
                                    cpu_ms_per_job=round(1000 * out["cpu_seconds"] / n, 4))  # fmt: skip
                    if processes == 1:
                        m.extra.setdefault("peak_rss_mib", []).append(round(out["max_rss_mib"], 1))
                    if n != self.sizes["drain_jobs"] and f"{n:,} jobs" not in m.notes:
                        m.notes.append(f"{n:,} jobs")

    def latencies(self) -> None:
        """Pickup latency at a steady rate, and of an idle consumer (one job every 1/idle_rate s)."""
        consumers = [x for x in self.systems if x.todo and x.takes_part("latency")]
        steady = (self.sizes["latency_rate"], self.sizes["latency_jobs"])
        idle = (self.sizes["idle_rate"], self.sizes["idle_jobs"])
        for (rate, n), what in ((steady, f"at a steady {steady[0]:,} jobs/s"),
                                (idle, f"of an idle consumer, one job every {1000 // idle[0]} ms")):  # fmt: skip
            label = f"pickup latency {what}, enqueue sent to task start ({n:,} jobs), p50"
            for order in self.rotations(consumers):
                for system in order:
                    system.module.reset(system.dsn)
                    vacuum(system.dsn)
                    if system.external:
                        out = system.module.latency(system.dsn, rate, n)
                    else:
                        out = latency.measure(system.key, system.dsn, rate, n)
                    self.record(label, system.name, "ms", out["p50_ms"], p95_ms=out["p95_ms"],
                                p99_ms=out["p99_ms"], max_ms=out["max_ms"])  # fmt: skip

    def backlogs(self) -> None:
        """Drain rate with a small and a large backlog; the large drain also samples worker RSS.

        Once per run (the large one takes minutes): the backlog is the variable, not noise."""
        draining = [
            x for x in self.systems if x.todo and x.takes_part("backlog") and x.name not in SLOW_DRAIN
        ]
        for size in (self.sizes["backlog_small"], self.sizes["backlog_large"]):
            label = f"drain a backlog of {size:,} no-op jobs, 1 worker process"
            for system in draining:
                self.fill(system, size)
                out = self.drain(system, size, rss_every=max(1, size // 10))
                samples = out.get("rss_samples_mib", [])
                extra: dict[str, float] = {"peak_rss_mib": round(out["max_rss_mib"], 1)}
                if len(samples) >= 2:
                    extra["rss_growth_pct"] = round(100 * (samples[-1] - samples[0]) / samples[0], 1)
                self.record(label, system.name, "jobs/s", size / out["seconds"], **extra)

    def history(self) -> None:
        """skiplock's drain rate with an empty history and with history_rows finished jobs in it."""
        ours = next(x for x in self.systems if x.name == "skiplock")
        rows, n = self.sizes["history_rows"], self.sizes["history_drain"]
        full = System(f"skiplock, {rows:,} jobs in history", "skiplock", skiplock_system, ours.batch, None,
                      ours.todo)  # fmt: skip
        full.dsn = fresh_database(full.dbname)
        try:
            skiplock_system.setup(full.dsn)
            skiplock_system.fill_history(full.dsn, rows)
            empty = System(
                "skiplock, empty history", "skiplock", skiplock_system, ours.batch, None, ours.todo
            )
            empty.dsn = ours.dsn
            label = f"drain {n:,} no-op jobs with an empty history vs {rows:,} finished jobs in history"
            for order in self.rotations([empty, full]):
                for system in order:
                    if system is empty:
                        skiplock_system.reset(system.dsn)
                    self.fill_live(system, n)
                    out = self.drain(system, n)
                    self.record(label, system.name, "jobs/s", n / out["seconds"])
            base = self.results[(label, empty.name)].median
            loaded = self.results[(label, full.name)]
            if base and loaded.median:
                loaded.notes.append(f"{loaded.median / base:.2f}× the empty-history rate")
        finally:
            drop_database(full.dbname)

    def fill_live(self, system: System, n: int) -> None:
        """Queue ``n`` jobs without touching history."""
        with psycopg.connect(system.dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE skiplock.job")
        system.batch(system.dsn, n, 1_000)
        vacuum(system.dsn)


def run(sizes: dict[str, int], reps: int, only: set[str]) -> tuple[list[Measurement], dict[str, str]]:
    chosen, skipped = systems()
    runner = Runner(sizes, reps, chosen)
    for s in chosen:
        s.dsn = fresh_database(s.dbname)
        s.module.setup(s.dsn)
    try:
        steps: dict[str, Callable[[], None]] = {
            "enqueue": runner.enqueue,
            "drain": runner.drains,
            "latency": runner.latencies,
            "backlog": runner.backlogs,
            "history": runner.history,
        }
        for name in WORKLOADS:
            if name in only:
                started = time.monotonic()
                steps[name]()
                print(f"[{name}: {time.monotonic() - started:.0f}s]", flush=True)
    finally:
        for s in chosen:
            drop_database(s.dbname)
    if "backlog" in only:
        for name in SLOW_DRAIN:
            if name not in skipped:
                skipped[f"{name} (backlog)"] = (
                    "not run: draining 1M jobs at its rate here would take 15-30 minutes"
                )
    return list(runner.results.values()), skipped


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="every workload at tiny sizes (CI: checks they run)"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, smoke 1)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the full job counts (e.g. 0.2)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {WORKLOADS}")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument(
        "--write-docs", action="store_true", help="rewrite the results section and charts in docs/"
    )
    options = parser.parse_args()
    only = {w.strip() for w in options.only.split(",") if w.strip()}
    if unknown := only - set(WORKLOADS):
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {WORKLOADS}")
    if options.smoke:
        sizes = dict(SMOKE)
    else:
        sizes = {k: v if k in UNSCALED else max(1, int(v * options.scale)) for k, v in FULL.items()}
    reps = options.reps or (1 if options.smoke else 3)
    env = environment()
    started = time.monotonic()
    results, skipped = run(sizes, reps, only)
    report = markdown(results)
    print(report)
    for name, why in skipped.items():
        print(f"- {name}: {why}")
    print(
        f"\n({reps} repetition(s), {time.monotonic() - started:.0f}s, git {env['git_sha']}, PostgreSQL {env['postgres']})"
    )
    data = to_json(results, env, sizes) | {"skipped": skipped, "reps": reps, "workloads": sorted(only)}
    out = options.out or (
        Path(tempfile.gettempdir()) / "skiplock-bench-smoke.json"
        if options.smoke
        else ROOT / "benchmarks" / "results" / time.strftime("%Y%m%dT%H%M%SZ.json", time.gmtime())
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str))
    print(f"results: {out}")
    if options.write_docs:
        _write_docs(report, skipped, env, sizes, reps)
        from benchmarks import charts

        for chart in charts.draw(out, None):
            print(f"chart: {chart}")


def _write_docs(
    report: str, skipped: dict[str, str], env: dict[str, Any], sizes: dict[str, int], reps: int
) -> None:
    page = ROOT / "docs" / "benchmarks.md"
    text = page.read_text() if page.exists() else ""
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    notes = "".join(f"- {name}: {why}\n" for name, why in skipped.items())
    block = (
        f"{start}\nMeasured {env['time']} on {env['cpus']} CPUs, PostgreSQL {env['postgres']} "
        f"(synchronous_commit={env['synchronous_commit']}, shared_buffers={env['shared_buffers']}), "
        f"git {env['git_sha']}, median of {reps} repetitions, sizes {sizes}.\n\n{report}\n{notes}{end}"
    )
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text + "\n" + block + "\n"
    page.write_text(text)


if __name__ == "__main__":
    main()
