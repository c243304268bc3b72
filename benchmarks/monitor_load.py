"""Does watching the queue cost the queue? The same skiplock drain alone, then with what
`skiplock monitor` reads (a snapshot every 0.25 s: four times its refresh rate) and a Prometheus
scrape of `skiplock metrics` every second running beside it. Reports jobs/s of each, the ratio,
and what one snapshot and one scrape cost.

    python -m benchmarks.monitor_load [--jobs N] [--reps R] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import skiplock
from benchmarks import skiplock_system
from benchmarks.common import drop_database, fresh_database, run_json, vacuum
from skiplock.metrics import QueueCollector
from skiplock.monitor import Monitor

SNAPSHOT_EVERY_S = 0.25
SCRAPE_EVERY_S = 1.0


def _watch(dsn: str, stop: threading.Event, snapshot_ms: list[float], scrape_ms: list[float]) -> None:
    """Read like a monitor and a scraper until ``stop``: one connection each, as they would."""
    with (
        skiplock.Client(dsn, min_size=1, max_size=1) as mon_client,
        skiplock.Client(dsn, max_size=1) as scraper,
    ):
        mon, collector = Monitor(mon_client), QueueCollector(scraper)
        next_scrape = 0.0
        while not stop.is_set():
            start = time.perf_counter()
            mon.render(mon.snapshot())
            snapshot_ms.append((time.perf_counter() - start) * 1000)
            if time.perf_counter() >= next_scrape:
                start = time.perf_counter()
                list(collector.collect())
                scrape_ms.append((time.perf_counter() - start) * 1000)
                next_scrape = time.perf_counter() + SCRAPE_EVERY_S
            stop.wait(SNAPSHOT_EVERY_S)


def drain(n: int, watched: bool) -> tuple[float, list[float], list[float]]:
    """Jobs per second draining ``n`` no-op jobs in a worker process, watched or not."""
    name = "skiplock_bench_monitor"
    dsn = fresh_database(name)
    snapshot_ms: list[float] = []
    scrape_ms: list[float] = []
    try:
        skiplock_system.setup(dsn)
        skiplock_system.batch_enqueue(dsn, n, 1000)
        vacuum(dsn)
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(dsn, stop, snapshot_ms, scrape_ms))
        if watched:
            watcher.start()
        try:
            result = run_json([sys.executable, "-m", "benchmarks.drain", "skiplock", dsn, str(n)])
        finally:
            stop.set()
            if watched:
                watcher.join(60)
        return n / float(result["seconds"]), snapshot_ms, scrape_ms
    finally:
        drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
    args = parser.parse_args()
    n, reps = (2_000, 1) if args.smoke else (args.jobs, args.reps)
    alone, watched, snaps, scrapes = [], [], [], []
    for _ in range(reps):  # interleaved, so drift on the machine hits both alike
        alone.append(drain(n, watched=False)[0])
        rate, s, m = drain(n, watched=True)
        watched.append(rate)
        snaps += s
        scrapes += m
    a, w = statistics.median(alone), statistics.median(watched)
    print(
        f"### drain of {n:,} no-op jobs, watched by the monitor (every {SNAPSHOT_EVERY_S} s) and a scrape (every {SCRAPE_EVERY_S:g} s)\n"
    )
    print(f"| drain | jobs/s (median of {reps}) | vs alone |")
    print("|---|---|---|")
    print(f"| alone | {a:,.0f} | 1.00× |")
    print(f"| watched | {w:,.0f} | {w / a:.2f}× |")
    if snaps:
        print(
            f"\none monitor snapshot: median {statistics.median(snaps):.1f} ms ({len(snaps)} taken); "
            f"one scrape: median {statistics.median(scrapes):.1f} ms ({len(scrapes)} taken)"
        )


if __name__ == "__main__":
    main()
