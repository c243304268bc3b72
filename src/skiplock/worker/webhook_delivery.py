"""Webhook delivery: an ordinary task on its own queue, run by workers started with ``webhooks``.

The database enqueues one delivery job per event and webhook (sql/functions/webhook.sql); this
task signs it with the webhook's secret (read at delivery, never stored in a job's arguments)
and the database's clock, and POSTs it from a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from skiplock._core import queries
from skiplock.backoff import exponential
from skiplock.context import current_job
from skiplock.errors import Fail
from skiplock.task import Task
from skiplock.webhooks import WebhookRejected
from skiplock.webhooks import post as webhook_post
from skiplock.worker.database import WorkerDatabase

__all__ = ["WEBHOOK_QUEUE", "WEBHOOK_TASK", "delivery_task"]

#: The built-in delivery task and its queue (jobs enqueued by the webhook triggers).
WEBHOOK_TASK = "skiplock.deliver_webhook"
WEBHOOK_QUEUE = "skiplock.webhooks"


def delivery_task(database: Callable[[], WorkerDatabase]) -> Task[Any]:
    """The delivery task, reading webhooks through ``database()`` (the running worker's)."""

    async def deliver_webhook(
        webhook_id: int, event: str, job_id: int, queue: str, task: str, at: str
    ) -> dict[str, int]:
        rows = await database().rows(queries.webhook_for_delivery(webhook_id=webhook_id), attempts=3)
        if not rows or not rows[0]["active"]:
            raise Fail(f"webhook {webhook_id} no longer exists")
        hook = rows[0]
        delivery = current_job().job.id
        payload = {
            "event": event,
            "job_id": job_id,
            "queue": queue,
            "task": task,
            "at": at,
            "delivery": delivery,
        }
        status = await asyncio.to_thread(
            webhook_post, hook["url"], hook["secret"], int(hook["now"]), delivery, payload
        )
        return {"status": status}

    return Task(
        deliver_webhook,
        name=WEBHOOK_TASK,
        queue=WEBHOOK_QUEUE,
        max_attempts=12,
        retry_backoff=exponential(5, cap=3600),
        no_retry_on=(WebhookRejected,),
    )
