"""Example tasks used by docker-compose.yml and the getting-started guide.

Run a worker for them with ``skiplock worker examples.tasks``.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import skiplock


@skiplock.task(queue="emails", max_attempts=8, timeout=timedelta(seconds=30))
def send_welcome(user_id: int) -> str:
    """Pretend to send an email (a sync task: runs in a worker thread)."""
    return f"welcome sent to user {user_id}"


@skiplock.task(queue="images")
async def resize(image_id: int, width: int = 640) -> dict[str, int]:
    """Pretend to resize an image (an async task: runs on the worker's event loop)."""
    await asyncio.sleep(random.uniform(0.001, 0.01))
    return {"image_id": image_id, "width": width}


@skiplock.task(queue="payments", max_attempts=5, retry_backoff=lambda attempt: timedelta(seconds=attempt))
def charge(order_id: int) -> str:
    """Fail the first attempt to show retries; succeed on the next one."""
    if skiplock.current_job().attempt == 1:
        raise ConnectionError("payment gateway timed out")
    return f"charged order {order_id}"
