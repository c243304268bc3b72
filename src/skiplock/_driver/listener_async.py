"""One dedicated LISTEN connection that wakes the worker when jobs arrive.

Notifications are hints, never the source of truth (the worker also polls). After any
connection loss the listener reconnects with exponential backoff, issues LISTEN again, and only
then reports ``on_connect_cb`` so the worker runs a catch-up poll: a job enqueued while we were
disconnected (whose notification nobody heard) is found by that poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import Any

import psycopg

__all__ = ["CANCEL_CHANNEL", "CHANNEL", "AsyncListener"]

CHANNEL = "skiplock_insert"  # payload: a queue with new due jobs
CANCEL_CHANNEL = "skiplock_cancel"  # payload: the id of a running job whose cancellation was requested
DONE_CHANNEL = "skiplock_done"  # payload: a queue where jobs finished (slots of limited queues free up)
log = logging.getLogger("skiplock.listener")


class AsyncListener:
    """LISTEN on ``skiplock_insert`` and call ``on_notify_cb(queue)`` for our queues; with
    ``on_cancel_cb``, also on ``skiplock_cancel`` and call it with each job id; with
    ``on_done_cb``, also on ``skiplock_done`` and call it for our queues."""

    def __init__(
        self,
        conninfo: str,
        queues: Collection[str],
        on_notify_cb: Callable[[str], None],
        on_connect_cb: Callable[[], None],
        *,
        on_cancel_cb: Callable[[int], None] | None = None,
        on_done_cb: Callable[[str], None] | None = None,
        on_lost_cb: Callable[[], None] | None = None,
        max_backoff_s: float = 5.0,
        ping_interval_s: float = 5.0,
    ) -> None:
        self.conninfo = conninfo
        self.queues = frozenset(queues)
        self.on_notify_cb = on_notify_cb
        self.on_connect_cb = on_connect_cb
        self.on_cancel_cb = on_cancel_cb
        self.on_done_cb = on_done_cb
        self.on_lost_cb = on_lost_cb
        self.max_backoff_s = max_backoff_s
        self.ping_interval_s = ping_interval_s
        self.connected = asyncio.Event()
        self.reconnects = 0
        self._stopping = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._backoff = 0.1

    async def run(self) -> None:
        """Listen until ``stop()``; reconnect forever on errors."""
        self._backoff = 0.1
        while not self._stopping.is_set():
            try:
                await self._listen_once()
            except (psycopg.Error, OSError) as exc:
                self.connected.clear()
                if self.on_lost_cb is not None:
                    self.on_lost_cb()
                if self._stopping.is_set():
                    break
                log.warning("listener connection lost (%s); reconnecting in %.1fs", exc, self._backoff)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._backoff)
                # Back off while connecting fails; a connection that worked resets it (below).
                self._backoff = min(self.max_backoff_s, self._backoff * 2)
                self.reconnects += 1
            finally:
                await self._close_conn()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        self._stopping.set()
        await self._close_conn()

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            await conn.close()

    async def _listen_once(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, application_name="skiplock-listener"
        )
        self._conn = conn
        await conn.execute(f"LISTEN {CHANNEL}")
        if self.on_cancel_cb is not None:
            await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
        if self.on_done_cb is not None:
            await conn.execute(f"LISTEN {DONE_CHANNEL}")
        self.connected.set()
        self._backoff = 0.1  # connected and listening: the next loss reconnects at once
        self.on_connect_cb()  # catch-up poll: anything enqueued while we were away
        while not self._stopping.is_set():
            # A bounded wait doubles as a liveness ping: a dead socket raises on the next query.
            async for notify in conn.notifies(timeout=self.ping_interval_s):
                if notify.channel == CANCEL_CHANNEL:
                    if self.on_cancel_cb is not None and notify.payload.isdigit():
                        self.on_cancel_cb(int(notify.payload))
                elif notify.payload not in self.queues:
                    continue
                elif notify.channel == DONE_CHANNEL:
                    if self.on_done_cb is not None:
                        self.on_done_cb(notify.payload)
                else:
                    self.on_notify_cb(notify.payload)
            if self._stopping.is_set():
                return
            await conn.execute("SELECT 1")
