"""Client CPU of one ``Client.enqueue``: the process time of each of N calls, on a scratch database.

``python -m benchmarks.enqueue_cpu [--calls N]`` creates a database, migrates it, enqueues 200
jobs to warm the pool and psycopg's prepared statements, then times N more one by one with
``time.process_time()`` (this process's CPU, so the server's work and the wait for it are left
out) and drops the database. On a shared machine run it a few times, alternating with the
version it is compared with.
"""

from __future__ import annotations

import argparse
import statistics
import time

import skiplock
from benchmarks.common import drop_database, fresh_database

DATABASE = "skiplock_bench_enqueue_cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    calls = parser.parse_args().calls
    dsn = fresh_database(DATABASE)
    try:
        skiplock.Migrator(dsn).up()
        with skiplock.Client(dsn) as client:
            for i in range(200):
                client.enqueue("bench.noop", {"i": i}, queue="bench")
            cpu: list[float] = []
            for i in range(calls):
                start = time.process_time()
                client.enqueue("bench.noop", {"i": i}, queue="bench")
                cpu.append(time.process_time() - start)
    finally:
        drop_database(DATABASE)
    print(
        f"{calls} enqueues: client CPU per call mean {statistics.fmean(cpu) * 1e6:.1f} us,"
        f" median {statistics.median(cpu) * 1e6:.1f} us, total {sum(cpu) * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
