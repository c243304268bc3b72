"""Sync/async primitive pairs used by the generated twins (async name → sync name)."""

from __future__ import annotations

import asyncio
import threading

__all__ = ["ALock", "Lock"]

ALock = asyncio.Lock
Lock = threading.Lock
