"""Charts for docs/benchmarks.md, drawn from the results JSON (matplotlib, PNG).

``python -m benchmarks.charts RESULTS.json [CHURN.json]`` writes ``docs/img/bench-*.png``;
``--write-docs`` runs call it for you.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT

OUT = ROOT / "docs" / "img"
COLORS = {"raw INSERT": "#9e9e9e", "raw COPY": "#cfcfcf", "skiplock": "#1b7f5b", "skiplock (def task)": "#7fc4a8",
          "graphile-worker": "#6a4c93", "PGQueuer": "#3f6fb5", "Procrastinate": "#c0762b",
          "BullMQ (Redis)": "#b5443f", "BullMQ (PostgreSQL)": "#e8a09c"}  # fmt: skip


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(workload: str) -> str:
    return (
        workload.split(":")[0].split(" (")[0].replace(" no-op jobs", "").replace(", one transaction each", "")
    )


def throughput(results: list[dict[str, Any]], path: Path) -> Path:
    """Each system's throughput as a fraction of the best raw ceiling, per workload."""
    plt = _pyplot()
    rows = [r for r in results if r["unit"] == "jobs/s" and r["median"] and "history" not in r["workload"]]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    systems = [s for s in COLORS if s != "raw COPY" and any(r["system"] == s for r in rows)]
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.9 * len(workloads)))
    height = 0.8 / len(systems)
    for w_index, workload in enumerate(workloads):
        mine = [r for r in rows if r["workload"] == workload]
        ceiling = max(r["median"] for r in mine if r["system"].startswith("raw"))
        for s_index, system in enumerate(systems):
            r = next((r for r in mine if r["system"] == system), None)
            if r is None:
                continue
            y = w_index + s_index * height
            ax.barh(y, r["median"] / ceiling, height=height, color=COLORS[system],
                    label=system if w_index == 0 else None)  # fmt: skip
            ax.text(r["median"] / ceiling + 0.01, y, f"{r['median']:,.0f}/s", va="center", fontsize=7)
    ax.set_yticks(
        [i + 0.4 - height / 2 for i in range(len(workloads))], [_short(w) for w in workloads], fontsize=8
    )
    ax.invert_yaxis()
    ax.set_xlabel("throughput ÷ best raw-SQL ceiling (higher is better)")
    widest = max(
        r["median"]
        / max(x["median"] for x in rows if x["workload"] == r["workload"] and x["system"].startswith("raw"))
        for r in rows
    )
    ax.set_xlim(0, max(1.0, widest) * 1.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency(results: list[dict[str, Any]], path: Path) -> Path | None:
    """p50/p95/p99 pickup latency per system, one panel per latency workload (steady, idle)."""
    rows = [r for r in results if r["unit"] == "ms" and r["median"]]
    if not rows:
        return None
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(workloads), figsize=(9 if len(workloads) == 1 else 12, 3.6), squeeze=False
    )
    labels = ("p50", "p95", "p99")
    for ax, workload in zip(axes[0], workloads, strict=True):
        group = [r for r in rows if r["workload"] == workload]
        width = 0.8 / len(group)
        for i, r in enumerate(group):
            values = [r["median"], r["medians"].get("p95_ms", 0), r["medians"].get("p99_ms", 0)]
            xs = [k + i * width for k in range(3)]
            ax.bar(xs, values, width=width, color=COLORS.get(r["system"], "#888"), label=r["system"])
            for x, v in zip(xs, values, strict=True):
                ax.text(x, v, f"{v:.1f}" if v < 100 else f"{v:,.0f}", ha="center", va="bottom", fontsize=6)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(3)], labels)
        ax.set_yscale("log")  # the slowest peers are thousands of times slower
        ax.set_ylabel("ms, enqueue sent → task start (log)")
        ax.set_title(_short(workload).replace("pickup latency ", ""), fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def churn(samples: list[dict[str, Any]], path: Path) -> Path:
    """Hot table and index size, and dead tuples, over a churn run."""
    plt = _pyplot()
    minutes = [s["minute"] for s in samples]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot(
        minutes, [s["table_bytes"] / 2**20 for s in samples], label="skiplock.job table MiB", color="#1b7f5b"
    )
    ax.plot(minutes, [s["index_bytes"] / 2**20 for s in samples], label="its indexes MiB", color="#3f6fb5")
    ax.set_xlabel("minute")
    ax.set_ylabel("MiB")
    ax2 = ax.twinx()
    ax2.plot(
        minutes, [s["dead_tuples"] for s in samples], label="dead tuples", color="#c0762b", linestyle=":"
    )
    ax2.set_ylabel("dead tuples")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [str(x.get_label()) for x in lines], fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(results_json: Path | None = None, churn_json: Path | None = None) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    if results_json is not None:
        results = json.loads(results_json.read_text())["results"]
        made.append(throughput(results, OUT / "bench-throughput.png"))
        if (p := latency(results, OUT / "bench-latency.png")) is not None:
            made.append(p)
    if churn_json is not None:
        made.append(churn(json.loads(churn_json.read_text())["samples"], OUT / "bench-churn.png"))
    return made


if __name__ == "__main__":
    paths = [Path(a) for a in sys.argv[1:]]
    churn_path = next((p for p in paths if p.name.startswith("churn-")), None)
    main_path = next((p for p in paths if not p.name.startswith("churn-")), None)
    for made in draw(main_path, churn_path):
        print(made)
