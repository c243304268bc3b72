"""``@skiplock.task``: declare a task, enqueue it, and the registry workers run from."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, overload

from skiplock._driver.protocols import CallerConnection
from skiplock.backoff import Backoff
from skiplock.defaults import get_async_client, get_client
from skiplock.errors import ConfigError
from skiplock.models import Job, JobSpec, Json, ParentRef
from skiplock.settings import DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE

__all__ = ["REGISTRY", "Task", "TaskCall", "task"]

R = TypeVar("R")

#: Every task declared in this process, by name. Workers run from it by default.
REGISTRY: dict[str, Task[Any]] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Options:
    queue: str
    priority: int = 0
    max_attempts: int | None = None
    run_at: datetime | None = None
    delay: timedelta | None = None
    dedupe_key: str | None = None
    dedupe_window: timedelta | None = None
    retry_backoff: Backoff | None = None
    depends_on: tuple[ParentRef, ...] = ()
    on_parent_failure: str | None = None
    conn: CallerConnection | None = None
    client: Any = None


class Task(Generic[R]):
    """A function registered as a skiplock task. Call it to run it inline; enqueue it to run it on a worker."""

    def __init__(
        self,
        fn: Callable[..., R],
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: timedelta | None = None,
        retry_backoff: Callable[[int], timedelta] | None = None,
        no_retry_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        if timeout is not None and (not isinstance(timeout, timedelta) or timeout <= timedelta(0)):
            raise ConfigError(f"timeout must be a positive timedelta, got {timeout!r}")
        if not 1 <= max_attempts <= 1000:
            raise ConfigError(f"max_attempts must be between 1 and 1000, got {max_attempts}")
        self.fn = fn
        self.name = name or fn.__name__
        self.queue = queue
        self.priority = priority
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.retry_backoff = retry_backoff
        self.no_retry_on = no_retry_on
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        params = self.signature.parameters.values()
        self._accepts_any = any(p.kind is p.VAR_KEYWORD for p in params)
        self._named = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        self._required = frozenset(
            p.name
            for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty
        )
        self._positional_only = any(p.kind is p.POSITIONAL_ONLY and p.default is p.empty for p in params)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<skiplock.Task {self.name!r} queue={self.queue!r}>"

    def bind_args(self, args: Mapping[str, Json]) -> dict[str, Json]:
        """Check that ``args`` fit the function's signature; raise ConfigError otherwise.

        Runs for every job a worker starts, so it checks precomputed name sets instead of
        calling ``inspect.Signature.bind``; the slow path only builds the error message.
        """
        keys = args.keys()
        if (
            not self._positional_only
            and self._required <= keys
            and (self._accepts_any or keys <= self._named)
        ):
            return dict(args)
        try:
            self.signature.bind(**args)
        except TypeError as exc:
            raise ConfigError(f"bad arguments for task {self.name!r}: {exc}") from None
        return dict(args)

    def retry_delay(self, job: Job) -> timedelta | None:
        """The delay before ``job``'s next attempt by this task's policy, or None for the database
        to decide: a job enqueued with its own policy (``using(retry_backoff=...)``) has it applied
        by ``skiplock.fail()``, and a task without one gets ``skiplock.backoff()``."""
        if job.retry_policy is not None or self.retry_backoff is None:
            return None
        return self.retry_backoff(job.attempt)

    def using(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        run_at: datetime | None = None,
        delay: timedelta | None = None,
        dedupe_key: str | None = None,
        dedupe_window: timedelta | None = None,
        retry_backoff: Backoff | None = None,
        depends_on: Iterable[ParentRef] | None = None,
        on_parent_failure: str | None = None,
        conn: CallerConnection | None = None,
        client: Any = None,
    ) -> TaskCall[R]:
        """Return this task with per-call options (queue, priority, delay, dedupe key, conn…).

        ``dedupe_window`` keeps ``dedupe_key`` taken for that long after the job completes;
        ``retry_backoff`` (``skiplock.backoff.fixed/linear/exponential``) is stored with the job
        and replaces the task's policy for it. ``depends_on`` (job ids, Jobs, JobSpecs of the
        same batch, ``Dependency``) makes the job wait for its parents; ``on_parent_failure``
        ("cancel" or "run") says what a failed or cancelled parent does to it.
        """
        return TaskCall(self, self._defaults()).using(
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            run_at=run_at,
            delay=delay,
            dedupe_key=dedupe_key,
            dedupe_window=dedupe_window,
            retry_backoff=retry_backoff,
            depends_on=None if depends_on is None else tuple(depends_on),
            on_parent_failure=on_parent_failure,
            conn=conn,
            client=client,
        )

    def spec(self, **kwargs: Json) -> JobSpec:
        """Build the JobSpec of one run without enqueueing it (for ``enqueue_many`` workflows)."""
        return TaskCall(self, self._defaults()).spec(**kwargs)

    def enqueue(self, **kwargs: Json) -> Job:
        """Enqueue one run with these keyword arguments (default client, or see :meth:`using`)."""
        return TaskCall(self, self._defaults()).enqueue(**kwargs)

    async def aenqueue(self, **kwargs: Json) -> Job:
        """Enqueue one run from asyncio code."""
        return await TaskCall(self, self._defaults()).aenqueue(**kwargs)

    def enqueue_many(self, kwargs_list: Iterable[Mapping[str, Json]]) -> list[int]:
        """Enqueue one run per mapping of keyword arguments, in one round trip per 5,000 jobs."""
        return TaskCall(self, self._defaults()).enqueue_many(kwargs_list)

    async def aenqueue_many(self, kwargs_list: Iterable[Mapping[str, Json]]) -> list[int]:
        """Enqueue many runs from asyncio code."""
        return await TaskCall(self, self._defaults()).aenqueue_many(kwargs_list)

    def _defaults(self) -> _Options:
        return _Options(queue=self.queue, priority=self.priority, max_attempts=self.max_attempts)


class TaskCall(Generic[R]):
    """A task with per-call options bound; immutable (``using`` returns a new one)."""

    def __init__(self, task: Task[R], options: _Options) -> None:
        self.task = task
        self.options = options

    def using(self, **changes: Any) -> TaskCall[R]:
        """Return a copy with more options set (None leaves an option unchanged)."""
        return TaskCall(
            self.task, replace(self.options, **{k: v for k, v in changes.items() if v is not None})
        )

    def enqueue(self, **kwargs: Json) -> Job:
        """Enqueue one run; inside ``conn``'s transaction when ``conn`` was given."""
        spec = self._spec(kwargs)
        client = self.options.client or get_client()
        # The spec as built, not unpacked into keywords for enqueue() to rebuild it.
        return client._enqueue_spec(spec, self.options.conn)

    async def aenqueue(self, **kwargs: Json) -> Job:
        """Enqueue one run from asyncio code."""
        spec = self._spec(kwargs)
        client = self.options.client or get_async_client()
        # The spec as built, not unpacked into keywords for enqueue() to rebuild it.
        return await client._enqueue_spec(spec, self.options.conn)

    def spec(self, **kwargs: Json) -> JobSpec:
        """Build the JobSpec of one run with these options, without enqueueing it."""
        return self._spec(kwargs)

    def enqueue_many(self, kwargs_list: Iterable[Mapping[str, Json]]) -> list[int]:
        """Enqueue many runs; all or none."""
        specs = [self._spec(dict(kw), many=True) for kw in kwargs_list]
        client = self.options.client or get_client()
        return client.enqueue_many(specs, conn=self.options.conn)

    async def aenqueue_many(self, kwargs_list: Iterable[Mapping[str, Json]]) -> list[int]:
        """Enqueue many runs from asyncio code; all or none."""
        specs = [self._spec(dict(kw), many=True) for kw in kwargs_list]
        client = self.options.client or get_async_client()
        return await client.enqueue_many(specs, conn=self.options.conn)

    def _spec(self, kwargs: Mapping[str, Json], *, many: bool = False) -> JobSpec:
        o = self.options
        if many and o.dedupe_key is not None:
            raise ConfigError("a single dedupe_key cannot apply to a batch; enqueue the jobs one by one")
        return JobSpec(
            task=self.task.name,
            args=self.task.bind_args(kwargs),
            queue=o.queue,
            priority=o.priority,
            run_at=o.run_at,
            delay=o.delay,
            max_attempts=o.max_attempts,
            dedupe_key=o.dedupe_key,
            dedupe_window=o.dedupe_window,
            retry_backoff=o.retry_backoff,
            depends_on=o.depends_on,
            on_parent_failure=o.on_parent_failure,
        )


@overload
def task(fn: Callable[..., R], /) -> Task[R]: ...
@overload
def task(
    *,
    name: str | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    timeout: timedelta | None = None,
    retry_backoff: Callable[[int], timedelta] | None = None,
    no_retry_on: tuple[type[BaseException], ...] = (),
) -> Callable[[Callable[..., R]], Task[R]]: ...
def task(
    fn: Callable[..., R] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    timeout: timedelta | None = None,
    retry_backoff: Callable[[int], timedelta] | None = None,
    no_retry_on: tuple[type[BaseException], ...] = (),
) -> Task[R] | Callable[[Callable[..., R]], Task[R]]:
    """Declare a task: ``@skiplock.task`` or ``@skiplock.task(queue="emails", max_attempts=8)``.

    The name defaults to the function's name and must be unique in the process. ``async def``
    and ``def`` functions both work (``def`` ones run in worker threads). ``retry_backoff`` maps
    the attempt number to the delay before the next try (default: the database's exponential
    backoff); exceptions in ``no_retry_on`` fail the job at once.
    """

    def register(f: Callable[..., R]) -> Task[R]:
        t = Task(
            f,
            name=name,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            retry_backoff=retry_backoff,
            no_retry_on=no_retry_on,
        )
        existing = REGISTRY.get(t.name)
        if existing is not None and existing.fn is not f and _origin(existing.fn) != _origin(f):
            raise ConfigError(
                f"task name {t.name!r} is already registered by {_origin(existing.fn)}; pass name= to tell them apart"
            )
        REGISTRY[t.name] = t
        return t

    return register(fn) if fn is not None else register


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
