"""Settings, defaults and DSN resolution."""

from __future__ import annotations

import difflib
import os
import re
import urllib.parse
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
    "connection_options",
    "pgbouncer_mode",
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

ENV_KEYS: Final = ("SKIPLOCK_DSN", "SKIPLOCK_TEST_DSN", "SKIPLOCK_PGBOUNCER")


def pgbouncer_mode(pgbouncer: bool | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Whether connections go through PgBouncer in transaction pooling: the explicit value, else
    ``SKIPLOCK_PGBOUNCER`` (1/true/yes/on)."""
    if pgbouncer is not None:
        return pgbouncer
    value = (os.environ if env is None else env).get("SKIPLOCK_PGBOUNCER", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def connection_options(pgbouncer: bool) -> dict[str, object]:
    """psycopg connection options for every pooled connection. Behind PgBouncer's transaction
    pooling a session's server connection changes between transactions, so psycopg must not
    prepare statements (PgBouncer before 1.21 cannot track them)."""
    return {"prepare_threshold": None} if pgbouncer else {}


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


_PASSWORD_KV = re.compile(r"""password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)""", re.IGNORECASE)
_PASSWORD_URL = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@?#]*:([^@/?#]*)@", re.IGNORECASE)


def _password_forms(dsn: str) -> set[str]:
    """The password of ``dsn`` in every form it may be printed in: as written, unquoted, decoded."""
    found = _PASSWORD_URL.search(dsn) or _PASSWORD_KV.search(dsn)
    if found is None:
        return set()
    raw = found.group(1)
    forms = {raw}
    if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
        inner = raw[1:-1]
        forms |= {inner, inner.replace("\\'", "'").replace("\\\\", "\\")}
    forms |= {urllib.parse.unquote(f) for f in forms} | {urllib.parse.quote(f, safe="") for f in forms}
    return {f for f in forms if f}


def scrub(text: str, dsn: str | None) -> str:
    """``text`` with the password of ``dsn`` (in any form it may be printed in) replaced by ``***``."""
    for form in sorted(_password_forms(dsn) if dsn else (), key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def redact(dsn: str) -> str:
    """A connection string fit for logs and reprs: the same, with its password as ``***``."""
    return scrub(dsn, dsn)
