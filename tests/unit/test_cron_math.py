"""Cron arithmetic and the @skiplock.cron decorator (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import skiplock
from skiplock._core.cron import check, due_ticks, next_tick
from skiplock.cron import CRON_REGISTRY

UTC = UTC


def test_five_field_ticks_in_a_window_exclude_the_start_and_include_the_end():
    ticks = due_ticks(
        "*/15 * * * *", "UTC", datetime(2030, 1, 1, 0, 0, tzinfo=UTC), datetime(2030, 1, 1, 1, 0, tzinfo=UTC)
    )
    assert [t.minute for t in ticks] == [15, 30, 45, 0]


def test_six_fields_put_seconds_first():
    ticks = due_ticks(
        "*/20 * * * * *", "UTC", datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    )
    assert [(t.minute, t.second) for t in ticks] == [(0, 20), (0, 40), (1, 0)]


def test_time_zones_follow_daylight_saving_time():
    paris = ZoneInfo("Europe/Paris")
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer (DST began 2030-03-31).
    ticks = due_ticks(
        "0 9 * * *", "Europe/Paris", datetime(2030, 3, 30, tzinfo=UTC), datetime(2030, 4, 1, 12, tzinfo=UTC)
    )
    assert [t.astimezone(UTC).hour for t in ticks] == [8, 7, 7]
    assert all(t.astimezone(paris).hour == 9 for t in ticks)


def test_the_tick_limit_bounds_a_long_catch_up():
    ticks = due_ticks(
        "* * * * * *", "UTC", datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC), limit=10
    )
    assert len(ticks) == 10
    assert next_tick("* * * * * *", "UTC", ticks[-1]) == ticks[-1] + timedelta(seconds=1)


@pytest.mark.parametrize("expr", ["* * *", "* * * * * * *", "every minute", ""])
def test_bad_expressions_are_rejected(expr):
    with pytest.raises(skiplock.ConfigError, match="invalid cron expression"):
        check(expr, "UTC")


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "minute field 61 is out of range 0-59 in '61 * * * *'"),
        ("0 0 * * 8", "day-of-week field 8 is out of range 0-7 in '0 0 * * 8'"),
        (
            "*/0 * * * *",
            "minute field '*/0' has step '0'; a step is a whole number of 1 or more, in '*/0 * * * *'",
        ),
    ],
)
def test_a_value_out_of_range_is_named_with_its_field(expr, message):
    with pytest.raises(skiplock.ConfigError) as raised:
        check(expr, "UTC")
    assert str(raised.value) == message


def test_unknown_time_zones_are_rejected():
    with pytest.raises(skiplock.ConfigError, match="unknown time zone"):
        check("* * * * *", "Mars/Olympus")


def test_the_decorator_registers_a_schedule_for_a_task():
    @skiplock.cron("*/5  * * * *", tz="Europe/Paris", args={"region": "eu"})
    @skiplock.task(queue="reports")
    def refresh(region: str) -> None: ...

    spec = CRON_REGISTRY["refresh"]
    assert (spec.cron, spec.tz, spec.task, spec.queue, spec.args) == (
        "*/5 * * * *",
        "Europe/Paris",
        "refresh",
        "reports",
        {"region": "eu"},
    )
    assert refresh.name == "refresh"  # the task itself is returned unchanged


def test_the_decorator_rejects_what_cannot_run():
    with pytest.raises(skiplock.ConfigError, match=r"above @skiplock\.task"):
        skiplock.cron("* * * * *")(lambda: None)  # type: ignore[type-var]
    with pytest.raises(skiplock.ConfigError, match="bad arguments"):

        @skiplock.cron("* * * * *", args={"nope": 1})
        @skiplock.task
        def needs_nothing() -> None: ...

    with pytest.raises(skiplock.ConfigError, match="invalid cron"):
        skiplock.cron("*/0 * * *")
