"""The supervisor's decisions that need no process: how many, how long to wait, how to say why."""

from __future__ import annotations

import os
import signal

import pytest

from skiplock.worker.supervisor import (
    RESTART_BACKOFF_CAP,
    RESTART_BACKOFF_FIRST,
    describe_exit,
    resolve_processes,
    restart_delay,
    run_processes,
)


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (3, 3), ("2", 2), (" 4 ", 4)])
def test_a_number_of_processes_is_taken_as_given(value, expected):
    assert resolve_processes(value) == expected


@pytest.mark.parametrize("value", ["auto", "AUTO", " auto"])
def test_auto_is_the_cpus_this_process_may_use(value):
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert resolve_processes(value) == usable


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0, "at least 1, got 0"),
        (-1, "at least 1, got -1"),
        ("0", "at least 1, got 0"),
        ("x", "'x' is not a number of processes nor 'auto'"),
        ("1.5", "'1.5' is not a number"),
        ("", "'' is not a number"),
        (True, "at least 1"),
    ],
)
def test_anything_else_is_refused(value, says):
    with pytest.raises(ValueError, match="processes") as caught:
        resolve_processes(value)
    assert says in str(caught.value)


def test_restarts_back_off_exponentially_up_to_a_cap():
    delays = [restart_delay(n) for n in range(1, 12)]
    assert delays[:4] == [RESTART_BACKOFF_FIRST * f for f in (1, 2, 4, 8)]
    assert delays == sorted(delays)
    assert delays[-1] == RESTART_BACKOFF_CAP
    assert restart_delay(10_000) == RESTART_BACKOFF_CAP  # no overflow far past the cap


@pytest.mark.parametrize(
    ("exitcode", "says"),
    [
        (0, "exited with status 0"),
        (1, "exited with status 1"),
        (-signal.SIGKILL, "was killed by SIGKILL"),
        (-signal.SIGSEGV, "was killed by SIGSEGV"),
        (-200, "was killed by signal 200"),
    ],
)
def test_an_exit_is_described_by_its_status_or_its_signal(exitcode, says):
    assert describe_exit(exitcode) == says


def test_run_processes_refuses_a_bad_count_before_starting_anything():
    with pytest.raises(ValueError, match="at least 1"):
        run_processes(0, modules=["no_such_module_is_imported"])
