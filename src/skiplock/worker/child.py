"""What runs in each worker process of a supervisor (``skiplock.worker.supervisor``).

A child builds its own worker from a :class:`ProcessSpec` (pickled to it by ``spawn``), asks to
die with its parent, and stops gracefully on the supervisor's signal or once the supervisor is
gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from skiplock.errors import ConfigError, SkiplockError
from skiplock.task import REGISTRY, Task
from skiplock.worker.runtime_async import AsyncWorker

__all__ = ["ProcessSpec", "child_main"]

log = logging.getLogger("skiplock.supervisor")

#: How often a child checks that its supervisor is still its parent (where PDEATHSIG is missing).
_PARENT_POLL: Final = 0.5
#: Children log with their pid: N processes write to one stream.
_LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessSpec:
    """What a child needs to build its worker; pickled to it by ``spawn``."""

    modules: tuple[str, ...]
    task_names: tuple[str, ...] | None
    default_task: str | None
    options: dict[str, Any]
    initializer: Callable[[AsyncWorker, int], object] | None
    log_level: str | int | None
    parent_pid: int

    def build(self, *, install_signal_handlers: bool = False) -> AsyncWorker:
        """Import the task modules and build the worker (no I/O yet)."""
        for name in self.modules:
            importlib.import_module(name)
        fallback = None
        if self.default_task is not None:
            module_name, _, attribute = self.default_task.partition(":")
            try:
                fallback = getattr(importlib.import_module(module_name), attribute)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"cannot load default task {self.default_task}: {exc}") from exc
            if not isinstance(fallback, Task):
                raise ConfigError(f"default task {self.default_task} is not a skiplock Task")
        tasks = None
        if self.task_names is not None:
            missing = [n for n in self.task_names if n not in REGISTRY]
            if missing:
                raise ConfigError(f"tasks not registered after importing their modules: {missing}")
            tasks = [REGISTRY[n] for n in self.task_names]
        return AsyncWorker(
            tasks, default_task=fallback, install_signal_handlers=install_signal_handlers, **self.options
        )


_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>


def _die_with_parent() -> bool:
    """Ask Linux for SIGTERM when the parent dies; whether the kernel agreed."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # here, not with the module: only a child needs it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _watch_parent(
    parent_pid: int, runner: AsyncWorker, loop: asyncio.AbstractEventLoop, grace: float
) -> None:
    """Stop the worker once ``parent_pid`` is no longer our parent, and exit if that hangs.

    The fallback where PDEATHSIG is missing (not Linux) or raced (the parent died before the
    child asked for it). Where both act, the worker sees one signal and one ``stop()``: a
    graceful stop, never the "second signal" of a forced one.
    """
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL)
    log.warning("the supervisor (pid %d) is gone: stopping", parent_pid)
    with contextlib.suppress(RuntimeError):  # the loop already closed: the worker is done
        asyncio.run_coroutine_threadsafe(runner.stop(), loop)
    # The worker's own shutdown allows grace plus 5 s for releases; past a margin on that, go.
    time.sleep(grace + 15)
    log.error("the worker did not stop %.0f s after its supervisor died: exiting", grace + 15)
    os._exit(1)


def child_main(spec: ProcessSpec, index: int, grace: float) -> None:
    """Run one worker in this child process until it stops; exit with its status."""
    armed = _die_with_parent()
    early = _EarlyStop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, early)
    # Its own process group: a Ctrl-C in a terminal reaches the supervisor only, which passes
    # it on once (a second copy would force the stop).
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    if os.getppid() != spec.parent_pid:  # the supervisor died before PDEATHSIG was armed
        os._exit(1)
    if spec.log_level is not None:
        logging.basicConfig(level=spec.log_level, stream=sys.stderr, format=_LOG_FORMAT, force=True)
    if not armed:
        log.debug("PR_SET_PDEATHSIG unavailable: watching the supervisor's pid only")
    try:
        runner = spec.build(install_signal_handlers=True)
        if spec.initializer is not None:
            spec.initializer(runner, index)
        if early.requested:  # stopped while it started: nothing claimed, nothing to release
            return
        asyncio.run(_run_child(spec.parent_pid, runner, grace, early))
    except SkiplockError as exc:
        log.error("worker process %d: %s", index, exc)  # one line: the error says it all
        sys.exit(1)
    if runner.forced or runner.has_stuck_threads:
        # Task threads cannot be interrupted; their jobs are already released or failed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1 if runner.forced else 0)


class _EarlyStop:
    """The child's SIGTERM/SIGINT handler until the worker installs its own (in ``run()``).

    The supervisor passes its first signal on once, maybe while a child is still importing or
    connecting: that child stops as soon as it can, with status 0, instead of dying of the signal.
    """

    def __init__(self) -> None:
        self.requested = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: AsyncWorker | None = None
        self.pending: set[asyncio.Future[None]] = set()

    def __call__(self, sig: int, frame: object) -> None:
        self.requested = True
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.stop)

    def stop(self) -> None:
        if self.runner is not None:
            future = asyncio.ensure_future(self.runner.stop())
            self.pending.add(future)
            future.add_done_callback(self.pending.discard)


async def _run_child(parent_pid: int, runner: AsyncWorker, grace: float, early: _EarlyStop) -> None:
    early.runner, early.loop = runner, asyncio.get_running_loop()
    if early.requested:
        early.stop()
    threading.Thread(
        target=_watch_parent,
        args=(parent_pid, runner, early.loop, grace),
        name="skiplock-parent-watch",
        daemon=True,  # it never ends by itself while the parent lives
    ).start()
    await runner.run()
