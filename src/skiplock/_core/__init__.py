"""Sans-I/O core: pure functions both twins (sync and async) call. Never imports psycopg."""

from __future__ import annotations
