"""Several worker processes under one supervisor: ``skiplock worker --processes N|auto``.

One worker process runs one event loop, so it uses about one core. The supervisor starts N
children with the ``spawn`` start method (nothing is shared across a fork: each child imports the
task modules and opens its own pool and listener), forwards SIGTERM/SIGINT to them, restarts a
child that died with a capped exponential backoff, and makes sure no child outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from skiplock.errors import ConfigError
from skiplock.migrate_async import AsyncMigrator
from skiplock.task import Task
from skiplock.worker.child import ProcessSpec, child_main
from skiplock.worker.runtime_async import AsyncWorker

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

__all__ = [
    "FORCE_KILL_AFTER",
    "RESTART_BACKOFF_CAP",
    "RESTART_BACKOFF_FIRST",
    "STABLE_AFTER",
    "describe_exit",
    "resolve_processes",
    "restart_delay",
    "run_processes",
]

log = logging.getLogger("skiplock.supervisor")

#: Delay before the first restart of a child that died; doubled for each further death in a row.
RESTART_BACKOFF_FIRST: Final = 1.0
#: The longest delay between restarts (a child that cannot start costs one attempt this often).
RESTART_BACKOFF_CAP: Final = 60.0
#: A child that lived this long before dying starts its backoff over.
STABLE_AFTER: Final = 60.0
#: After the second signal the children stop at once; those still alive this much later are killed.
FORCE_KILL_AFTER: Final = 5.0


def resolve_processes(value: int | str) -> int:
    """Turn ``N`` or ``"auto"`` into a number of worker processes.

    ``auto`` is the number of CPUs this process may run on (its affinity mask, so a container's
    cpuset counts, not the host's cores).

    Raises:
        ValueError: not a whole number of at least 1, nor ``auto``.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return _usable_cpus()
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a number of processes nor 'auto'") from None
    if isinstance(value, bool) or value < 1:
        raise ValueError(f"the number of processes must be at least 1, got {value}")
    return value


def restart_delay(deaths: int) -> float:
    """Seconds to wait before restarting a child that died ``deaths`` times in a row (≥ 1)."""
    doublings = min(max(0, deaths - 1), 62)  # past the cap anyway; 2**n must stay a float
    return min(RESTART_BACKOFF_CAP, RESTART_BACKOFF_FIRST * 2.0**doublings)


def describe_exit(exitcode: int) -> str:
    """How a child ended, for the log: ``exited with status 1`` or ``was killed by SIGKILL``."""
    if exitcode >= 0:
        return f"exited with status {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    return f"was killed by {name}"


def run_processes(
    processes: int | str = "auto",
    tasks: Iterable[Task[Any]] | None = None,
    *,
    modules: Sequence[str] = (),
    default_task: str | None = None,
    initializer: Callable[[AsyncWorker, int], object] | None = None,
    log_level: str | int | None = "INFO",
    **options: Any,
) -> int:
    """Run ``processes`` worker processes until SIGTERM/SIGINT; return the exit status.

    Each child process imports ``modules`` (and, as ``spawn`` does, the main module), builds an
    :class:`AsyncWorker` from ``options`` (its keyword arguments) and runs it with its own pool and
    listener. The supervisor, this process, claims nothing itself:

    - the first SIGTERM or SIGINT is passed to every child, which stops gracefully (stops claiming,
      lets running jobs finish within ``grace_period``, releases the rest without counting an
      attempt); a second one is passed on too (the children stop at once), and children still
      alive :data:`FORCE_KILL_AFTER` seconds later are killed, as they are at once on a third;
    - a child that dies otherwise is started again after :func:`restart_delay` seconds, which
      grows with each death in a row and starts over once a child lived :data:`STABLE_AFTER`
      seconds; the log says how it ended (status or signal);
    - children never outlive the supervisor: on Linux each asks the kernel for SIGTERM when its
      parent dies (``PR_SET_PDEATHSIG``), and each also watches its parent's pid, stops gracefully
      when the parent is gone and exits by force if that takes longer than the grace period.

    With ``burst=True`` a child that exits with status 0 is done, and the supervisor returns once
    all are. Call it from the main thread (it installs signal handlers) of a main module that
    guards its own start with ``if __name__ == "__main__":``, as ``spawn`` requires.

    Args:
        processes: how many children, or ``"auto"``: one per CPU this process may use.
        tasks: the tasks to run (default: every task registered in the child once ``modules``
            are imported). Each child finds them by name after importing their modules.
        modules: modules that declare tasks, imported by every child.
        default_task: ``module:attribute`` of a Task for jobs no task is declared for.
        initializer: called in each child with its worker and the child's index (0 to N-1)
            before the worker runs: logging, tracing, a metrics server. It must be picklable
            (a module-level function or a ``functools.partial`` of one).
        log_level: the children's logging level (``None``: leave logging to ``initializer``).
        **options: :class:`AsyncWorker` keyword arguments (``dsn``, ``queues``,
            ``concurrency``…), except ``install_signal_handlers``, which the children set.

    Returns:
        0 after a graceful stop (or a finished burst) in which every child exited with status 0;
        1 after a forced stop or when a child exited otherwise.

    Raises:
        ValueError: ``processes`` is not a number of at least 1 nor ``"auto"``.
        ConfigError: bad worker options, a task that is not registered, or a bad ``default_task``.
        SkiplockError: the schema is not migrated, or the database is unreachable (checked once,
            before any child starts).
    """
    count = resolve_processes(processes)
    if "install_signal_handlers" in options:
        raise ConfigError("run_processes installs the children's signal handlers itself")
    names = None if tasks is None else tuple(t.name for t in tasks)
    task_modules = [] if tasks is None else [t.fn.__module__ for t in tasks]
    spec = ProcessSpec(
        modules=tuple(dict.fromkeys([*modules, *(m for m in task_modules if m != "__main__")])),
        task_names=names,
        default_task=default_task,
        options=dict(options),
        initializer=initializer,
        log_level=log_level,
        parent_pid=os.getpid(),
    )
    # Build one worker here and throw it away: bad options fail now, once, not in every child.
    probe = spec.build()
    if probe.check_schema:
        asyncio.run(AsyncMigrator(probe.dsn).check())
    return _Supervisor(spec, count, burst=probe.burst, grace=probe.grace_period.total_seconds()).run()


def _usable_cpus() -> int:
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if counter is not None:
        return max(1, counter() or 1)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        return max(1, os.cpu_count() or 1)


@dataclass(slots=True)
class _Slot:
    """One of the N places a child runs in; a restarted child takes its predecessor's slot."""

    index: int
    process: BaseProcess | None = None
    started_at: float = 0.0
    deaths: int = 0  # in a row, reset once a child lived STABLE_AFTER seconds
    restart_at: float | None = None
    done: bool = False  # burst mode: its child found nothing left to do


class _Supervisor:
    def __init__(self, spec: ProcessSpec, count: int, *, burst: bool, grace: float) -> None:
        self.spec = spec
        self.burst = burst
        self.grace = grace
        self.slots = [_Slot(i) for i in range(count)]
        # Imported here, not with the module: `import skiplock` should not pay for multiprocessing.
        import multiprocessing

        self.context = multiprocessing.get_context("spawn")
        self.signals: list[int] = []
        self.stopping = 0  # signals handled so far: 1 graceful, 2 at once, 3 killed
        self.kill_at: float | None = None
        self.failed = False

    def run(self) -> int:
        from multiprocessing.connection import wait

        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        # The signal byte lands in the socket, so a wait below returns at once.
        previous_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        log.info("supervisor %s: starting %d worker processes", os.getpid(), len(self.slots))
        try:
            for slot in self.slots:
                self._start(slot)
            while not self._finished():
                ready = wait([*self._sentinels(), wake_r], self._timeout())
                if wake_r in ready:
                    with contextlib.suppress(BlockingIOError):
                        wake_r.recv(4096)
                self._handle_signals()
                self._reap_children()
                self._restart_due()
                if self.kill_at is not None and time.monotonic() >= self.kill_at:
                    self._kill_all()
        finally:
            signal.set_wakeup_fd(previous_fd)
            for s, handler in previous.items():
                signal.signal(s, handler)
            wake_r.close()
            wake_w.close()
            self._kill_all()  # only an exception gets here with children alive
        log.info("supervisor %s: stopped", os.getpid())
        return 1 if self.failed or self.stopping >= 2 else 0

    def _alive(self) -> list[_Slot]:
        return [s for s in self.slots if s.process is not None and s.process.exitcode is None]

    def _finished(self) -> bool:
        if any(s.process is not None for s in self.slots):  # running, or ended and not yet reaped
            return False
        return bool(self.stopping) or all(s.done for s in self.slots)

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            self.stopping += 1
            name = signal.Signals(sig).name
            if self.stopping == 1:
                log.info(
                    "received %s: stopping the worker processes gracefully (again to stop at once)", name
                )
            elif self.stopping == 2:
                log.warning("received %s again: stopping the worker processes at once", name)
                self.kill_at = time.monotonic() + FORCE_KILL_AFTER
            else:
                log.warning("received %s a third time: killing the worker processes", name)
                self._kill_all()
                continue
            for slot in self._alive():
                pid = slot.process.pid if slot.process is not None else None
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)

    def _kill_all(self) -> None:
        for slot in self._alive():
            assert slot.process is not None
            slot.process.kill()
        for slot in self.slots:
            if slot.process is not None:
                slot.process.join()

    def _on_signal(self, sig: int, frame: object) -> None:
        self.signals.append(sig)  # acted on by the loop in run(), outside the handler

    def _reap_children(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if process is None or process.exitcode is None:
                continue
            process.join()
            code = process.exitcode
            slot.process = None
            lived = now - slot.started_at
            if self.stopping:
                self.failed |= code != 0
                log.info("worker process %d (pid %s) %s", slot.index, process.pid, describe_exit(code))
            elif self.burst and code == 0:
                slot.done = True
                log.info("worker process %d (pid %s) finished its burst", slot.index, process.pid)
            else:
                slot.deaths = 1 if lived >= STABLE_AFTER else slot.deaths + 1
                delay = restart_delay(slot.deaths)
                slot.restart_at = now + delay
                log.warning(
                    "worker process %d (pid %s) %s after %.1f s; restarting it in %.1f s",
                    slot.index,
                    process.pid,
                    describe_exit(code),
                    lived,
                    delay,
                )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and now >= slot.restart_at:
                slot.restart_at = None
                if not self.stopping:
                    self._start(slot)

    def _sentinels(self) -> list[int]:
        # Every child not yet reaped, dead ones too: one that died after the last reaping is seen
        # by its sentinel (readable at once), not missed until something else wakes the loop.
        return [s.process.sentinel for s in self.slots if s.process is not None]

    def _start(self, slot: _Slot) -> None:
        process = self.context.Process(
            target=child_main,
            args=(self.spec, slot.index, self.grace),
            name=f"skiplock-worker-{slot.index}",
            daemon=False,  # a daemonic process may not start processes, and tasks may want to
        )
        # Started from the main thread on purpose: PDEATHSIG fires when the thread that forked
        # the child ends, not only when the process does.
        process.start()
        slot.process = process
        slot.started_at = time.monotonic()
        log.info("worker process %d started (pid %s)", slot.index, process.pid)

    def _timeout(self) -> float | None:
        moments = [s.restart_at for s in self.slots if s.restart_at is not None]
        if self.kill_at is not None:
            moments.append(self.kill_at)
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())
