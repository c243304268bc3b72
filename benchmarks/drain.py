"""Child process: drain the queue of one system and print elapsed, CPU and peak RSS as JSON.

Run by ``benchmarks.__main__`` so that each worker is a fresh process we can measure alone.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time


def main(system: str, dsn: str, expected: int) -> dict[str, float]:
    cpu0 = time.process_time()
    start = time.perf_counter()
    if system == "raw":
        from benchmarks import raw

        done = raw.drain(dsn)
        assert done == expected, f"raw drained {done} of {expected}"
    elif system == "skiplock":
        import skiplock
        from benchmarks.skiplock_system import WORKER

        @skiplock.task(queue="bench")
        async def noop(i: int) -> None:
            return None

        worker = skiplock.AsyncWorker([noop], dsn=dsn, burst=True, maintenance=False, **WORKER)  # type: ignore[arg-type]
        asyncio.run(worker.run())
        assert worker.stats.completed == expected, worker.stats
    elif system == "pgqueuer":
        from benchmarks import pgqueuer_system

        asyncio.run(pgqueuer_system.drain(dsn))
    else:
        raise SystemExit(f"unknown system {system}")
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": elapsed, "cpu_seconds": cpu, "max_rss_mib": rss_kib / 1024}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
