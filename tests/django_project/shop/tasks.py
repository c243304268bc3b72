"""Django tasks (the django.tasks API; the django_tasks backport before Django 6)."""

from __future__ import annotations

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from shop.models import Order


@task()
def send_receipt(order_id: int) -> str:
    order = Order.objects.get(id=order_id)  # the worker thread uses Django's ORM
    return f"receipt for {order.email}"


@task(priority=10, queue_name="reports")
def report(n: int) -> int:
    return n * 2


@task()
def explode() -> None:
    raise ValueError("boom")


@task()
async def add(a: int, b: int) -> int:
    return a + b


@task(takes_context=True)
def with_context(context, label: str) -> str:
    return f"{label} attempt {context.attempt}"
