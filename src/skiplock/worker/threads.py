"""The threads that run ``def`` tasks, and the hand-off between them and the event loop.

``concurrent.futures.ThreadPoolExecutor`` with ``asyncio.wrap_future`` costs ~35 µs of CPU per
call here: a ``concurrent.futures.Future`` with its condition variable, a second future chained
to it, and one wake-up of the event loop per finished call. A no-op ``def`` task spent most of
its time there. :class:`TaskThreads` hands each call to a thread with a plain queue and returns
an ``asyncio.Future``; finished calls are collected in a deque and the loop is woken once for
however many finished meanwhile (~5 µs per call).

Threads are started on demand up to ``size`` (one per concurrent ``def`` task) and are not
daemons: a task's thread that outlives its job (a thread cannot be interrupted) keeps the
process alive until it returns, as with ``ThreadPoolExecutor``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["TaskThreads", "ThreadRun"]


class ThreadRun:
    """One call handed to a thread: the loop awaits :attr:`future`; any thread may ask whether
    the call is over (:meth:`done`) or be called back once it is (:meth:`add_done_callback`)."""

    __slots__ = ("_callbacks", "_done", "_lock", "context", "fn", "future")

    def __init__(self, fn: Callable[[], Any], future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future
        self.context = contextvars.copy_context()  # current_job() and the caller's context vars
        self._done = False
        self._callbacks: list[Callable[[ThreadRun], object]] | None = None
        self._lock = threading.Lock()

    def done(self) -> bool:
        """Whether the call returned or raised (or was cancelled before it started)."""
        return self._done

    def add_done_callback(self, fn: Callable[[ThreadRun], object]) -> None:
        """Call ``fn(self)`` once the call is over: at once, in this thread, if it is already."""
        with self._lock:
            if not self._done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(self)

    def _finish(self) -> None:
        with self._lock:
            self._done = True
            callbacks, self._callbacks = self._callbacks, None
        for fn in callbacks or ():
            fn(self)


class TaskThreads:
    """Up to ``size`` threads running calls handed over from one event loop."""

    def __init__(self, size: int, *, name_prefix: str = "skiplock-task") -> None:
        self.size = size
        self.name_prefix = name_prefix
        self._calls: queue.SimpleQueue[ThreadRun | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads done with a call that will take the next without a new one
        self._lock = threading.Lock()
        self._finished: collections.deque[tuple[ThreadRun, bool, Any]] = collections.deque()
        self._woken = False  # a wake-up of the loop is scheduled and has not run yet
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def submit(self, fn: Callable[[], Any]) -> ThreadRun:
        """Run ``fn()`` in a thread, in a copy of the caller's context; await ``.future``.

        Cancelling the future before a thread took the call means it never runs.
        """
        if self._closed:
            raise RuntimeError("the task threads are shut down")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        run = ThreadRun(fn, loop.create_future())
        with self._lock:
            if self._idle:
                self._idle -= 1
                start = False
            else:
                start = len(self._threads) < self.size
        if start:
            thread = threading.Thread(
                target=self._work, name=f"{self.name_prefix}-{len(self._threads)}", daemon=False
            )
            self._threads.append(thread)
            thread.start()
        self._calls.put(run)
        return run

    def shutdown(self) -> None:
        """Let every thread end after its current call, without waiting; calls not started are
        dropped."""
        self._closed = True
        while True:
            try:
                run = self._calls.get_nowait()
            except queue.Empty:
                break
            if run is not None:
                run._finish()
        for _ in self._threads:
            self._calls.put(None)

    def _work(self) -> None:
        calls, finished = self._calls, self._finished
        while True:
            run = calls.get()
            if run is None:
                return
            if run.future.cancelled():  # given up on (a timeout, a shutdown) before it started
                run._finish()
            else:
                try:
                    outcome = (run, True, run.context.run(run.fn))
                except BaseException as exc:  # handed to the awaiting task, which decides
                    outcome = (run, False, exc)
                run._finish()
                finished.append(outcome)
                if not self._woken:
                    self._woken = True
                    loop = self._loop
                    # RuntimeError: the loop closed meanwhile, and nobody awaits the call.
                    if loop is not None and not loop.is_closed():
                        with contextlib.suppress(RuntimeError):
                            loop.call_soon_threadsafe(self._deliver)
            with self._lock:
                self._idle += 1

    def _deliver(self) -> None:
        """On the loop: resolve the futures of every call that finished since the last wake-up."""
        self._woken = False  # first: a call finishing from now on schedules another delivery
        finished = self._finished
        while finished:
            run, ok, value = finished.popleft()
            future = run.future
            if future.done():  # cancelled while it ran (a timeout): its result is dropped
                continue
            if ok:
                future.set_result(value)
            elif isinstance(value, StopIteration):  # a future cannot hold one: as a coroutine would
                future.set_exception(RuntimeError(f"task raised StopIteration: {value!r}"))
            else:
                future.set_exception(value)
