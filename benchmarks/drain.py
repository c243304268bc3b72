"""Child process: drain the queue of one system and print elapsed, CPU and memory as JSON.

Run by ``benchmarks.__main__`` so that each worker is a fresh process we can measure alone.
``python -m benchmarks.drain SYSTEM DSN EXPECTED [RSS_EVERY]``: EXPECTED 0 skips the count check
(several processes share the queue); with RSS_EVERY, resident memory is sampled every that many
jobs, so a long drain shows whether memory stays flat.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """Current resident set size of this process (not the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


class Sampler:
    """Counts jobs and records RSS every ``every`` jobs."""

    def __init__(self, every: int) -> None:
        self.every, self.count, self.samples = every, 0, []  # type: tuple[int, int, list[float]]

    def tick(self, n: int = 1) -> None:
        before, self.count = self.count, self.count + n
        if self.every and before // self.every != self.count // self.every:
            self.samples.append(round(rss_mib(), 1))


def main(system: str, dsn: str, expected: int, rss_every: int = 0) -> dict[str, Any]:
    sampler = Sampler(rss_every)
    run = _runner(system, dsn, expected, sampler)  # imports happen here, outside the clock
    cpu0 = time.process_time()
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "max_rss_mib": peak_kib / 1024,
        "rss_samples_mib": sampler.samples,
    }


def _runner(system: str, dsn: str, expected: int, sampler: Sampler) -> Callable[[], None]:
    """Import what ``system`` needs and return a function that drains its queue."""
    if system == "raw":
        from benchmarks import raw

        def drain_raw() -> None:
            done = raw.drain(dsn, on_batch=sampler.tick)
            assert not expected or done == expected, f"raw drained {done} of {expected}"

        return drain_raw
    if system in ("skiplock", "skiplock-def"):
        import skiplock
        from benchmarks.skiplock_system import WORKER

        if system == "skiplock":

            @skiplock.task(queue="bench", name="noop")
            async def noop(i: int) -> None:
                sampler.tick()

            task = noop
        else:  # what most users write: a plain function, run in the worker's thread pool

            @skiplock.task(queue="bench", name="noop")
            def noop_def(i: int) -> None:
                sampler.tick()

            task = noop_def

        def drain_skiplock() -> None:
            worker = skiplock.AsyncWorker([task], dsn=dsn, burst=True, maintenance=False, **WORKER)  # type: ignore[arg-type]
            asyncio.run(worker.run())
            assert not expected or worker.stats.completed == expected, worker.stats

        return drain_skiplock
    if system == "pgqueuer":
        from benchmarks import pgqueuer_system

        return lambda: asyncio.run(pgqueuer_system.drain(dsn, on_job=sampler.tick))
    if system == "procrastinate":
        from benchmarks import procrastinate_system

        return lambda: asyncio.run(procrastinate_system.drain(dsn))
    raise SystemExit(f"unknown system {system}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *map(int, sys.argv[4:5]))))
