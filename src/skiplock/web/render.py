"""The Jinja2 environment: autoescaping on, and the filters that show job data inertly.

HTML escaping stops markup; it does not stop bidirectional-override characters (U+202E and
friends) from reordering what a reader sees, nor control characters from hiding text. The
``shown`` filter makes both visible as ``\\u202e`` / ``\\x1b`` before autoescaping writes the text,
and every job value sits in an element styled ``unicode-bidi: isolate``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import jinja2

from skiplock._core.text import printable

__all__ = ["environment", "shown"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Bidi embeddings, overrides and isolates, marks, and the zero-width characters that hide text.
_INVISIBLE = {
    c: f"\\u{c:04x}"
    for c in [
        0x061C,
        0x200B,
        0x200C,
        0x200D,
        0x200E,
        0x200F,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
        0xFEFF,
    ]
}


def shown(value: object, limit: int | None = None, *, newlines: bool = True) -> str:
    """``value`` as text with control and bidi characters visible, cut to ``limit`` characters."""
    if value is None:
        return ""
    text = printable(value, newlines=newlines).translate(_INVISIBLE)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def as_json(value: object) -> str:
    """Pretty JSON of a job's args or result, shown inertly."""
    return shown(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str))


def duration(value: timedelta | float | None) -> str:
    if value is None:
        return "–"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if value else "–"


def size(value: float | None) -> str:
    if value is None:
        return "–"
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TB"


def rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}/s"


def environment() -> jinja2.Environment:
    """A Jinja2 environment over the package's templates, autoescaping everything."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its extension (the SVG parts included)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(shown=shown, as_json=as_json, duration=duration, when=when, size=size, rate=rate)
    return env
