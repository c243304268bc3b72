"""When to flush buffered acknowledgements."""

from __future__ import annotations

__all__ = ["should_flush"]


def should_flush(*, buffered: int, oldest_age_s: float, max_batch: int, max_delay_s: float) -> bool:
    """Flush when the buffer is full, or when its oldest entry has waited ``max_delay_s``."""
    if buffered <= 0:
        return False
    return buffered >= max_batch or oldest_age_s >= max_delay_s
