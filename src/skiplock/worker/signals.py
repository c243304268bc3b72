"""Moments of a worker's life that code outside it can wait for, instead of polling its state."""

from __future__ import annotations

import asyncio

__all__ = ["Signal", "WorkerSignals"]


class Signal:
    """Something that happens again and again: ``count`` says how often so far, and
    :meth:`wait_for` returns once it has happened ``n`` times in all."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def fire(self, n: int = 1) -> None:
        self.count += n
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, n: int) -> None:
        """Wait until the signal has fired ``n`` times since the worker was created."""
        while self.count < n:
            await self._changed.wait()

    async def next(self) -> None:
        """Wait for the next time it fires."""
        await self.wait_for(self.count + 1)


class WorkerSignals:
    """What a worker reports as it runs (each a :class:`Signal`; ``listening`` is a state).

    - ``claimed``: a claim returned jobs (fires once per claim, ``claimed_jobs`` per job);
    - ``idle``: the producer found nothing due and went to sleep;
    - ``acked``: a batch of completions was recorded;
    - ``reaped``: a reaper round ran (whether or not it found expired leases);
    - ``maintained``: a partition-maintenance round ran;
    - ``scheduled``: a scheduler round ran;
    - ``listening``: set while the LISTEN connection is up; ``reconnected`` fires each time it
      came back after a loss.
    """

    def __init__(self) -> None:
        self.claimed = Signal()
        self.claimed_jobs = Signal()
        self.idle = Signal()
        self.acked = Signal()
        self.reaped = Signal()
        self.maintained = Signal()
        self.scheduled = Signal()
        self.reconnected = Signal()
        self.listening = asyncio.Event()
