"""The threads that run def tasks: results, errors, context, concurrency, cancellation."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from skiplock.worker.threads import TaskThreads, ThreadRun

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def test_a_call_returns_its_value_and_raises_its_error_in_the_awaiting_task() -> None:
    async def main() -> None:
        threads = TaskThreads(2)
        assert await threads.submit(lambda: 41 + 1).future == 42
        with pytest.raises(ZeroDivisionError):
            await threads.submit(lambda: 1 / 0).future
        threads.shutdown()

    asyncio.run(main())


def test_a_call_sees_the_submitters_context_and_runs_off_the_loop_thread() -> None:
    async def main() -> tuple[str, bool]:
        threads = TaskThreads(1)
        VAR.set("job 7")
        loop_thread = threading.get_ident()
        seen = await threads.submit(lambda: (VAR.get(), threading.get_ident() != loop_thread)).future
        threads.shutdown()
        return seen

    assert asyncio.run(main()) == ("job 7", True)


def test_size_calls_that_block_all_run_at_once_and_no_more_threads_start() -> None:
    async def main() -> tuple[int, int, list[str]]:
        threads = TaskThreads(4, name_prefix="test-four")
        running, changed, release = [0], threading.Condition(), threading.Event()

        def blocking() -> str:
            with changed:
                running[0] += 1
                changed.notify_all()
            release.wait(timeout=10)
            return "ok"

        def four_running() -> int:
            with changed:
                changed.wait_for(lambda: running[0] >= 4, timeout=10)
                return running[0]

        runs = [threads.submit(blocking) for _ in range(6)]
        at_once = await asyncio.to_thread(four_running)
        started = len([t for t in threading.enumerate() if t.name.startswith("test-four")])
        release.set()
        results = await asyncio.wait_for(asyncio.gather(*(r.future for r in runs)), 10)
        threads.shutdown()
        return at_once, started, results

    at_once, started, results = asyncio.run(main())
    assert at_once == 4  # all four threads busy at once; the other two calls waited their turn
    assert started == 4
    assert results == ["ok"] * 6


def test_a_call_cancelled_before_a_thread_took_it_never_runs() -> None:
    async def main() -> list[str]:
        threads = TaskThreads(1)
        ran: list[str] = []
        gate = threading.Event()
        first = threads.submit(lambda: gate.wait(10))
        second = threads.submit(lambda: ran.append("second"))
        second.future.cancel()
        gate.set()
        await first.future
        while not second.done():  # noqa: ASYNC110 - the thread marks it over right after the first
            await asyncio.sleep(0.001)
        threads.shutdown()
        return ran

    assert asyncio.run(main()) == []


def test_done_callbacks_run_once_the_call_is_over_or_at_once_if_it_is() -> None:
    async def main() -> list[str]:
        threads = TaskThreads(1)
        gate = threading.Event()
        run: ThreadRun = threads.submit(lambda: gate.wait(10))
        calls: list[str] = []
        run.add_done_callback(lambda r: calls.append(f"later:{r.done()}"))
        assert not run.done()
        gate.set()
        await run.future
        run.add_done_callback(lambda r: calls.append(f"now:{r.done()}"))
        threads.shutdown()
        return calls

    assert asyncio.run(main()) == ["later:True", "now:True"]
