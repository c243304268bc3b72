"""Steps of the Django integration test, run inside the project (python scenario.py STEP).

enqueue  enqueue through the backend (in and out of transaction.atomic) and print the ids (JSON)
results  read results for the ids given on stdin and print them (JSON)
admin    drive the admin pages with Django's test client and print what it saw (JSON)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup()

from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from shop.models import Order  # noqa: E402
from shop.tasks import add, explode, report, send_receipt, with_context  # noqa: E402

from skiplock.contrib.django.models import Job  # noqa: E402


class Rollback(Exception):
    pass


def enqueue() -> dict:
    try:
        with transaction.atomic():
            order = Order.objects.create(email="gone@example.com", cents=1)
            send_receipt.enqueue(order.id)
            raise Rollback
    except Rollback:
        pass
    assert Job.objects.count() == 0, "a rolled-back enqueue left a job"
    with transaction.atomic():
        order = Order.objects.create(email="ada@example.com", cents=1250)
        receipt = send_receipt.enqueue(order.id)
        assert Job.objects.filter(id=int(receipt.id)).exists()  # visible inside the transaction
    later = send_receipt.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(order.id)
    return {
        "receipt": receipt.id,
        "later": later.id,
        "report": report.enqueue(21).id,
        "explode": explode.enqueue().id,
        "add": asyncio.run(add.aenqueue(2, 3)).id,
        "context": with_context.enqueue("ctx").id,
        "states": [[j.task, j.state, j.priority] for j in Job.objects.order_by("id")],
    }


def results(ids: dict) -> dict:
    out = {}
    for name in ("receipt", "later", "report", "explode", "add", "context"):
        r = {"receipt": send_receipt, "later": send_receipt, "report": report, "explode": explode,
             "add": add, "context": with_context}[name].get_result(ids[name])  # fmt: skip
        out[name] = {
            "status": str(r.status),
            "value": r.return_value if str(r.status) == "SUCCESSFUL" else None,
            "errors": [e.exception_class_path for e in r.errors],
            "attempts": r.attempts,
        }
    return out


def admin(ids: dict) -> dict:
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    http = Client()
    http.force_login(user)
    listing = http.get("/admin/skiplock/job/")
    workers = http.get("/admin/skiplock/worker/")
    detail = http.get(f"/admin/skiplock/job/{ids['later']}/change/")
    cancel = http.post(
        "/admin/skiplock/job/", {"action": "cancel_jobs", "_selected_action": [ids["later"]]}, follow=True
    )
    return {
        "listing": listing.status_code,
        "lists_receipt": "shop.tasks.send_receipt" in listing.content.decode(),
        "workers": workers.status_code,
        "detail": detail.status_code,
        "cancel": cancel.status_code,
        "later_state": Job.objects.get(id=int(ids["later"])).state,
    }


if __name__ == "__main__":
    step = sys.argv[1]
    given = json.loads(sys.stdin.read() or "{}") if step != "enqueue" else {}
    result = {"enqueue": enqueue, "results": lambda: results(given), "admin": lambda: admin(given)}[step]()
    print(json.dumps(result, default=str))
