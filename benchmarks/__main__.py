"""Run the benchmarks: ``python -m benchmarks [--smoke] [--reps N] [--write-docs]``.

Every system gets its own database on one server; systems run in a rotating order on each
repetition (the machine is noisy); each number is the median of the repetitions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import pgqueuer_system, raw, skiplock_system
from benchmarks.common import (
    ROOT,
    Measurement,
    drop_database,
    environment,
    fresh_database,
    markdown,
    run_child,
    timed,
    to_json,
    vacuum,
)

FULL = {"batch_jobs": 100_000, "batch_size": 1_000, "single_jobs": 3_000, "drain_jobs": 100_000}
SMOKE = {"batch_jobs": 2_000, "batch_size": 500, "single_jobs": 50, "drain_jobs": 2_000}


class System:
    """What the runner needs from each system."""

    def __init__(
        self,
        name: str,
        setup: Callable[[str], None],
        reset: Callable[[str], None],
        batch: Callable[[str, int, int], None],
        single: Callable[[str, int], None] | None,
        drains: bool,
    ) -> None:
        self.name, self.setup, self.reset, self.batch, self.single, self.drains = (
            name,
            setup,
            reset,
            batch,
            single,
            drains,
        )
        self.dsn = ""


def systems() -> tuple[list[System], dict[str, str]]:
    found = [
        System("raw INSERT", raw.setup, raw.reset, raw.batch_insert, raw.single_insert, True),
        System("raw COPY", raw.setup, raw.reset, raw.batch_copy, None, False),
        System("skiplock", skiplock_system.setup, skiplock_system.reset, skiplock_system.batch_enqueue,
               skiplock_system.single_enqueue, True),
    ]  # fmt: skip
    skipped: dict[str, str] = {}
    reason = pgqueuer_system.available()
    if reason is None:
        found.append(
            System(
                "PGQueuer",
                pgqueuer_system.setup,
                pgqueuer_system.reset,
                pgqueuer_system.batch_enqueue,
                pgqueuer_system.single_enqueue,
                True,
            )
        )
    else:
        skipped["PGQueuer"] = reason
    skipped["Procrastinate"] = "not yet wired into this harness (planned with the performance issue)"
    return found, skipped


def drain_key(system: System) -> str:
    return {"raw INSERT": "raw", "skiplock": "skiplock", "PGQueuer": "pgqueuer"}[system.name]


def remaining(system: System) -> int:
    table = {"raw": "raw_job", "skiplock": "skiplock.job", "pgqueuer": "pgqueuer"}[drain_key(system)]
    with psycopg.connect(system.dsn) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def run(sizes: dict[str, int], reps: int) -> tuple[list[Measurement], dict[str, str]]:
    chosen, skipped = systems()
    results: dict[tuple[str, str], Measurement] = {}

    def record(workload: str, system: str, unit: str, value: float, **extra: Any) -> None:
        m = results.setdefault((workload, system), Measurement(workload, system, unit))
        m.samples.append(value)
        m.extra.update(extra)

    for s in chosen:
        s.dsn = fresh_database("skiplock_bench_" + "".join(c for c in s.name.lower() if c.isalnum()))
        s.setup(s.dsn)
    try:
        for rep in range(reps):
            order = chosen[rep % len(chosen) :] + chosen[: rep % len(chosen)]
            for s in order:
                batch_label = (
                    f"batch enqueue: {sizes['batch_jobs']:,} jobs in batches of {sizes['batch_size']:,}"
                )
                s.reset(s.dsn)
                vacuum(s.dsn)
                seconds = timed(lambda s=s: s.batch(s.dsn, sizes["batch_jobs"], sizes["batch_size"]))
                record(batch_label, s.name, "jobs/s", sizes["batch_jobs"] / seconds)
                if s.single is not None:
                    s.reset(s.dsn)
                    vacuum(s.dsn)
                    seconds = timed(lambda s=s: s.single(s.dsn, sizes["single_jobs"]))  # type: ignore[misc]
                    record(f"single-job enqueue, one transaction each ({sizes['single_jobs']:,} jobs)", s.name,
                           "jobs/s", sizes["single_jobs"] / seconds)  # fmt: skip
                if s.drains:
                    s.reset(s.dsn)
                    s.batch(s.dsn, sizes["drain_jobs"], 1_000)
                    vacuum(s.dsn)
                    out = run_child("drain", drain_key(s), s.dsn, str(sizes["drain_jobs"]))
                    left = remaining(s)
                    if left:
                        raise RuntimeError(f"{s.name} left {left} jobs undrained")
                    record(
                        f"drain {sizes['drain_jobs']:,} no-op jobs, 1 worker process",
                        s.name,
                        "jobs/s",
                        sizes["drain_jobs"] / out["seconds"],
                        cpu_ms_per_job=round(1000 * out["cpu_seconds"] / sizes["drain_jobs"], 4),
                        rss_mib=round(out["max_rss_mib"], 1),
                    )
    finally:
        for s in chosen:
            drop_database("skiplock_bench_" + "".join(c for c in s.name.lower() if c.isalnum()))
    return list(results.values()), skipped


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="every workload at tiny sizes (CI: checks they run)"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, smoke 1)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the full sizes (e.g. 0.2)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument(
        "--write-docs", action="store_true", help="rewrite the results table in docs/benchmarks.md"
    )
    options = parser.parse_args()
    sizes = dict(SMOKE) if options.smoke else {k: max(1, int(v * options.scale)) for k, v in FULL.items()}
    sizes["batch_size"] = SMOKE["batch_size"] if options.smoke else FULL["batch_size"]
    reps = options.reps or (1 if options.smoke else 3)
    env = environment()
    started = time.monotonic()
    results, skipped = run(sizes, reps)
    report = markdown(results)
    print(report)
    for name, why in skipped.items():
        print(f"- {name}: {why}")
    print(
        f"\n({reps} repetition(s), {time.monotonic() - started:.0f}s, git {env['git_sha']}, PostgreSQL {env['postgres']})"
    )
    data = to_json(results, env, sizes) | {"skipped": skipped, "reps": reps}
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
