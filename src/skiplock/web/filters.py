"""The job filter of the search page and of bulk actions: parsed and checked, never spliced into SQL.

Pure: a mapping of form fields in, a :class:`JobFilter` (or a one-line :class:`FilterError`) out.
The same filter drives the search, the confirmation count and the bulk action, so what an operator
confirmed is exactly what runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from skiplock.models import JobState

__all__ = ["FIELDS", "FilterError", "JobFilter"]

FIELDS = ("queue", "state", "task", "args_path", "error", "since", "until")
_MAX_TEXT = 500


class FilterError(ValueError):
    """A form field that cannot be a filter; the message names it."""


def _text(form: Mapping[str, str], name: str) -> str | None:
    value = (form.get(name) or "").strip()
    if not value:
        return None
    if len(value) > _MAX_TEXT:
        raise FilterError(f"{name}: at most {_MAX_TEXT} characters")
    if "\x00" in value:
        raise FilterError(f"{name}: contains a NUL character")
    return value


def _time(form: Mapping[str, str], name: str) -> datetime | None:
    value = _text(form, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(
            f"{name}: not a date and time (use 2026-12-01T09:30, UTC unless an offset is given)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    """Every optional criterion of a job search (None: not filtered)."""

    queue: str | None = None
    state: JobState | None = None
    task: str | None = None
    args_path: str | None = None  # a jsonpath predicate over args, e.g. $.user_id == 7
    error: str | None = None  # a substring of any attempt's error message (case-insensitive)
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before

    @classmethod
    def parse(cls, form: Mapping[str, str]) -> JobFilter:
        """Build a filter from form fields. Raises FilterError with a one-line reason."""
        state_text = _text(form, "state")
        state = None
        if state_text is not None:
            try:
                state = JobState(state_text)
            except ValueError:
                raise FilterError(f"state: must be one of {', '.join(s.value for s in JobState)}") from None
        since, until = _time(form, "since"), _time(form, "until")
        if since and until and since >= until:
            raise FilterError("since must be before until")
        return cls(
            queue=_text(form, "queue"),
            state=state,
            task=_text(form, "task"),
            args_path=_text(form, "args_path"),
            error=_text(form, "error"),
            since=since,
            until=until,
        )

    @property
    def is_empty(self) -> bool:
        return all(v is None for v in asdict(self).values())

    def params(self) -> dict[str, Any]:
        """The named-statement parameters of this filter."""
        out: dict[str, Any] = asdict(self)
        out["state"] = self.state.value if self.state else None
        return out

    def form(self) -> dict[str, str]:
        """The filter as form fields (for links and hidden inputs); empty fields left out."""
        out = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            if isinstance(value, JobState):
                out[name] = value.value
            elif isinstance(value, datetime):
                out[name] = value.isoformat()
            else:
                out[name] = str(value)
        return out

    def query(self, **extra: str | int) -> str:
        """The filter (and ``extra``) as a URL query string, every value percent-encoded."""
        return urlencode({**self.form(), **{k: str(v) for k, v in extra.items()}})
