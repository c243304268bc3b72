"""Print the real plans of the statements inside claim() and complete(), with timing and buffers.

``python -m benchmarks.explain [--jobs N] [--batch N]`` fills a fresh database with N jobs,
then runs one claim and one complete of ``batch`` jobs with ``auto_explain`` reporting every
nested statement (ANALYZE, BUFFERS) back to this client. Use it to check that a change to the
SQL keeps the plans of docs/performance.md.
"""

from __future__ import annotations

import argparse
import uuid

import psycopg

import skiplock
from benchmarks.common import drop_database, fresh_database

AUTO_EXPLAIN = """
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_timing = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
"""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain", description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    options = parser.parse_args()
    dsn = fresh_database("skiplock_bench_explain")
    try:
        skiplock.Migrator(dsn).up()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for start in range(0, options.jobs, 10_000):
                n = min(10_000, options.jobs - start)
                conn.execute(
                    "SELECT count(*) FROM skiplock.enqueue_many('{bench}', '{noop}', array_fill('{}'::jsonb, ARRAY[%s]))",
                    [n],
                )
            conn.execute("VACUUM ANALYZE skiplock.job")
            plans: list[str] = []
            conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
            conn.execute(AUTO_EXPLAIN)
            rows = conn.execute(
                "SELECT id, lease_token FROM skiplock.claim('{bench}', %s, %s)", [uuid.uuid4(), options.batch]
            ).fetchall()
            _show(f"claim of {options.batch} ({len(rows)} claimed)", plans)
            conn.execute(
                "SELECT count(*) FROM skiplock.complete(%b::bigint[], %b::uuid[])",
                [[r[0] for r in rows], [r[1] for r in rows]],
            )
            _show(f"complete of {len(rows)}", plans)
    finally:
        drop_database("skiplock_bench_explain")


def _show(title: str, plans: list[str]) -> None:
    print(f"===== {title}")
    print("\n\n".join(plans))
    plans.clear()


if __name__ == "__main__":
    main()
