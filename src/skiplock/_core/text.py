"""Text from the database made safe to show on a terminal."""

from __future__ import annotations

__all__ = ["printable"]

# C0 and C1 control characters (ESC and CSI start terminal escape sequences) and DEL, shown as \xNN.
_CONTROL = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_KEEP_NEWLINES = {k: v for k, v in _CONTROL.items() if k != ord("\n")}


def printable(value: object, *, newlines: bool = True) -> str:
    """``str(value)`` with every control character escaped, so job data can never drive the
    terminal (move the cursor, recolour, clear the screen); newlines kept unless ``newlines`` is
    false (one-line cells)."""
    return str(value).translate(_KEEP_NEWLINES if newlines else _CONTROL)
