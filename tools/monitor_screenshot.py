"""Render one `skiplock monitor` screen of a live database to SVG for docs/monitor.md.

    python tools/monitor_screenshot.py DSN docs/img/monitor.svg [--width 140]

Takes two snapshots a few seconds apart (so rates and trends have something to show).
"""

from __future__ import annotations

import argparse
import io
import time

from rich.console import Console

import skiplock
from skiplock.monitor import Monitor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=140)
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()
    with skiplock.Client(args.dsn) as client:
        mon = Monitor(client)
        snap = mon.snapshot()
        for _ in range(args.samples):
            time.sleep(1)  # one refresh period of the real monitor
            snap = mon.snapshot()
        console = Console(
            record=True, width=args.width, force_terminal=True, color_system="truecolor", file=io.StringIO()
        )
        console.print(mon.render(snap, args.width))
        console.save_svg(args.out, title="skiplock monitor")


if __name__ == "__main__":
    main()
