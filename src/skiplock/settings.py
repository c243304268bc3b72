"""Settings, defaults and DSN resolution."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Final

from skiplock.errors import ConfigError

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_QUEUE",
    "ENV_KEYS",
    "check_env",
    "resolve_dsn",
]

DEFAULT_QUEUE: Final = "default"
DEFAULT_MAX_ATTEMPTS: Final = 10
DEFAULT_LEASE: Final = timedelta(seconds=30)
DEFAULT_POLL_INTERVAL: Final = timedelta(seconds=1)
DEFAULT_REAP_INTERVAL: Final = timedelta(seconds=5)
DEFAULT_GRACE_PERIOD: Final = timedelta(seconds=30)
DEFAULT_RETENTION: Final = timedelta(days=7)
DEFAULT_MAINTENANCE_INTERVAL: Final = timedelta(minutes=10)
#: Largest batch the SQL functions accept by default (skiplock.max_batch_size).
MAX_BATCH: Final = 10_000
#: Client-side chunk for enqueue_many: below MAX_BATCH so a default server always accepts it.
ENQUEUE_CHUNK: Final = 5_000

ENV_KEYS: Final = ("SKIPLOCK_DSN", "SKIPLOCK_TEST_DSN")


def resolve_dsn(dsn: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Return the connection string to use.

    Precedence: the explicit ``dsn``, then ``SKIPLOCK_DSN``, then ``DATABASE_URL``; otherwise the
    empty string, which makes libpq use its ``PG*`` environment variables and defaults.
    """
    environ = os.environ if env is None else env
    for candidate in (dsn, environ.get("SKIPLOCK_DSN"), environ.get("DATABASE_URL")):
        if candidate:
            return candidate
    return ""


def check_env(env: Mapping[str, str] | None = None) -> list[str]:
    """Return warnings for ``SKIPLOCK_*`` variables that look like misspellings."""
    environ = os.environ if env is None else env
    warnings = []
    for key in environ:
        if key.startswith("SKIPLOCK_") and key not in ENV_KEYS:
            close = difflib.get_close_matches(key, ENV_KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"unknown environment variable {key}{hint}")
    return warnings


def positive(name: str, value: timedelta) -> timedelta:
    """Return ``value`` or raise ConfigError unless it is a positive timedelta."""
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ConfigError(f"{name} must be a positive timedelta, got {value!r}")
    return value
