"""Shared benchmark plumbing: databases, timing, environment facts, reports."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_dsn() -> str:
    return os.environ.get("SKIPLOCK_BENCH_DSN", DEFAULT_ADMIN_DSN)


def fresh_database(name: str) -> str:
    """Drop and create database ``name`` on the benchmark server; return its DSN."""
    admin = admin_dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(admin, dbname=name)


def as_url(dsn: str) -> str:
    """A postgresql:// URL for drivers that only take URLs (asyncpg)."""
    p = conninfo_to_dict(dsn)
    auth = p.get("user", "postgres") + (f":{p['password']}" if p.get("password") else "")
    return f"postgresql://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p.get('dbname', 'postgres')}"


def drop_database(name: str) -> None:
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def vacuum(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn`` took, or the seconds it returns (systems that time themselves)."""
    start = time.perf_counter()
    reported = fn()
    elapsed = time.perf_counter() - start
    return float(reported) if isinstance(reported, float) else elapsed


def run_json(argv: list[str], *, cwd: Path = ROOT, timeout: float = 900) -> dict[str, Any]:
    """Run a command and return the JSON object it prints on its last line of output."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def npm_install(folder: Path, package: str) -> str | None:
    """Install ``folder``'s pinned Node packages unless ``package`` is there; return why not, or None."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not on PATH"
    if not (folder / "node_modules" / package).exists():
        done = subprocess.run(
            # `npm install`, not `npm ci`: a lock file cannot list every platform's optional
            # binaries, and `npm ci` refuses it then; package.json pins exact versions.
            ["npm", "install", "--no-audit", "--no-fund"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            return f"npm install failed: {done.stderr.strip()[-300:]}"
    return None


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max of pickup latencies in ms, as the latency tables report them."""
    qs = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return {"p50_ms": round(qs[49], 2), "p95_ms": round(qs[94], 2), "p99_ms": round(qs[98], 2),
            "max_ms": round(max(latencies_ms), 2)}  # fmt: skip


def run_children(module: str, argsets: list[list[str]], timeout: float = 900) -> list[dict[str, Any]]:
    """Run several ``python -m benchmarks.<module>`` children at once; return each one's JSON."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", f"benchmarks.{module}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for args in argsets
    ]
    outputs = [c.communicate(timeout=timeout) for c in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        if child.returncode != 0:
            raise RuntimeError(f"{module} failed ({child.returncode}): {err.strip()[-800:]}")
    return [dict(json.loads(out.strip().splitlines()[-1])) for out, _ in outputs]


@dataclass
class Measurement:
    """One workload for one system: repeated samples, reported as the median.

    ``extra`` holds further numbers per repetition (CPU per job, RSS, latency percentiles),
    also reported as medians. Units in ms are lower-is-better; everything else higher-is-better.
    """

    workload: str
    system: str
    unit: str
    samples: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def lower_is_better(self) -> bool:
        return self.unit == "ms"

    def extras(self) -> dict[str, float]:
        return {k: round(statistics.median(v), 4) for k, v in self.extra.items() if v}


def environment() -> dict[str, Any]:
    """Facts that make a result reproducible: code version, server, machine."""
    facts: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        facts["git_sha"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        facts["git_sha"] = "unknown"
    with psycopg.connect(admin_dsn()) as conn:
        facts["postgres"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        for setting in ("synchronous_commit", "shared_buffers", "max_wal_size", "wal_level", "fsync"):
            facts[setting] = conn.execute(f"SHOW {setting}").fetchone()[0]  # type: ignore[index]
    host = conninfo_to_dict(admin_dsn()).get("host", "")
    facts["server"] = host
    return facts


def to_json(results: list[Measurement], env: dict[str, Any], sizes: dict[str, Any]) -> dict[str, Any]:
    return {
        "environment": env,
        "sizes": sizes,
        "results": [asdict(m) | {"median": m.median, "medians": m.extras()} for m in results],
    }


def _number(value: float, unit: str) -> str:
    return f"{value:,.2f} {unit}" if unit == "ms" else f"{value:,.0f} {unit}"


#: The peer the bars are set against: every table also shows each system ÷ this one.
REFERENCE_PEER = "graphile-worker"


def markdown(results: list[Measurement]) -> str:
    """A table per workload: each system's median, its ratio to the raw ceiling and to
    graphile-worker (plain ÷: above 1 is faster, or for latency slower), and how many times
    better skiplock did than it (throughput: ours ÷ theirs; latency: theirs ÷ ours)."""
    lines: list[str] = []
    workloads = list(dict.fromkeys(m.workload for m in results))
    for workload in workloads:
        rows = [m for m in results if m.workload == workload]
        lower = rows[0].lower_is_better
        raws = [m.median for m in rows if m.system.startswith("raw") and m.median]
        ceiling = (min(raws) if lower else max(raws)) if raws else None
        ours = next((m.median for m in rows if m.system == "skiplock" and m.median), None)
        peer = next((m.median for m in rows if m.system == REFERENCE_PEER and m.median), None)
        peer_head, peer_rule = (f" ÷ {REFERENCE_PEER} |", "---|") if peer else ("", "")
        lines += [
            f"### {workload}",
            "",
            f"| system | median | {'÷ ceiling (lower is better)' if lower else 'vs best raw ceiling'} "
            f"|{peer_head} skiplock advantage |",
            f"|---|---|---|{peer_rule}---|",
        ]
        for m in rows:
            if m.median is None:
                lines.append(f"| {m.system} | {m.error or 'not run'} |{' |' if peer else ''} | |")
                continue
            vs_ceiling = f"{m.median / ceiling:.2f}×" if ceiling else ""
            vs_peer = f" {m.median / peer:.2f}× |" if peer else ""
            advantage = ""
            if ours and m.system != "skiplock":
                advantage = f"{(m.median / ours) if lower else (ours / m.median):.2f}×"
            details = [f"{k} {v:g}" for k, v in m.extras().items()] + m.notes
            detail = f" ({', '.join(details)})" if details else ""
            lines.append(
                f"| {m.system} | {_number(m.median, m.unit)}{detail} | {vs_ceiling} |{vs_peer} {advantage} |"
            )
        lines.append("")
    return "\n".join(lines)
