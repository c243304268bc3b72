"""Webhooks against a real local HTTP server: signed, retried through a failing receiver, refused
for good on 4xx, transactional, and registered only with sound input."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

import skiplock
from skiplock.webhooks import sign, verify
from waiting import await_until

SECRET = "whsec-0123456789abcdef"


class Receiver:
    """An HTTP server that answers each POST with the next status of ``script`` (then the last)."""

    def __init__(self, script: list[int]) -> None:
        self.script = script
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers.items()), body))
                status = receiver.script[min(len(receiver.requests), len(receiver.script)) - 1]
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500, 503, 200])
    yield r
    r.close()


def delivery(conn: psycopg.Connection) -> tuple[int, str, int] | None:
    return conn.execute(
        "SELECT id, state::text, attempt FROM skiplock.jobs WHERE task = 'skiplock.deliver_webhook'"
    ).fetchone()


async def test_a_delivery_is_signed_and_retried_until_the_receiver_recovers(dsn, client, conn, receiver):
    """Pass: a completed job's webhook is POSTed, fails twice (500, 503), is retried as a job and
    lands on the third attempt; every attempt carries the same delivery id and a valid signature."""
    client.add_webhook(receiver.url, SECRET, events=["completed"], queues=["emails"])

    @skiplock.task(queue="emails")
    def send(to: str) -> str:
        return to

    job = send.using(client=client).enqueue(to="ada@example.com")
    worker = skiplock.AsyncWorker(
        [send], dsn=dsn, webhooks=True, poll_interval=__import__("datetime").timedelta(seconds=0.2)
    )
    async with worker:
        for attempt in (1, 2):
            await await_until(
                lambda a=attempt: asyncio.sleep(
                    0, (d := delivery(conn)) is not None and d[1:] == ("retryable", a)
                ),
                timeout=30,
                what=f"failed delivery attempt {attempt}",
            )
            client.retry([delivery(conn)[0]])  # due now instead of after its backoff
        await await_until(
            lambda: asyncio.sleep(0, (d := delivery(conn)) is not None and d[1] == "completed"),
            timeout=30,
            what="the delivery completed",
        )
    assert len(receiver.requests) == 3
    deliveries = {h["Skiplock-Delivery"] for h, _ in receiver.requests}
    assert deliveries == {str(delivery(conn)[0])}
    for headers, body in receiver.requests:
        assert verify(SECRET, headers, body, now=time.time())
        assert not verify("another-secret-000", headers, body, now=time.time())
        payload = json.loads(body)
        assert (payload["event"], payload["job_id"], payload["queue"], payload["task"]) == (
            "completed",
            job.id,
            "emails",
            "send",
        )
    assert SECRET not in json.dumps(conn.execute("SELECT args FROM skiplock.jobs").fetchall())


async def test_a_receiver_refusing_with_4xx_is_not_retried(dsn, client, conn):
    refusing = Receiver([410])
    try:
        client.add_webhook(refusing.url, SECRET, events=["failed"])

        @skiplock.task(queue="q", max_attempts=1)
        def boom() -> None:
            raise ValueError("no")

        boom.using(client=client).enqueue()
        worker = skiplock.AsyncWorker([boom], dsn=dsn, webhooks=True, burst=True)
        await worker.run()
        await await_until(
            lambda: asyncio.sleep(0, (d := delivery(conn)) is not None and d[1] == "failed"),
            timeout=30,
            what="the refused delivery dead-lettered",
        )
        assert delivery(conn)[2] == 1  # one attempt: 410 means stop
        assert json.loads(refusing.requests[0][1])["event"] == "failed"
    finally:
        refusing.close()


def test_deliveries_are_transactional_and_the_trigger_lives_with_the_webhooks(dsn, client, conn, receiver):
    hook = client.add_webhook(receiver.url, SECRET)
    triggers = "SELECT count(*) FROM pg_trigger WHERE tgname = 'skiplock_webhooks'"
    assert conn.execute(triggers).fetchone() == (1,)
    client.enqueue("t", {}, queue="q")
    with psycopg.connect(dsn) as tx:  # completed, then rolled back: no delivery
        job_id, token = tx.execute(
            "SELECT id, lease_token FROM skiplock.claim('{q}', gen_random_uuid())"
        ).fetchone()
        tx.execute("SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, token])
        assert tx.execute(
            "SELECT count(*) FROM skiplock.job WHERE queue = 'skiplock.webhooks'"
        ).fetchone() == (1,)
        tx.rollback()
    assert delivery(conn) is None
    assert [w["id"] for w in client.webhooks()] == [hook]
    assert "secret" not in client.webhooks()[0]
    assert client.remove_webhook(hook)
    assert not client.remove_webhook(hook)
    assert conn.execute(triggers).fetchone() == (0,)


@pytest.mark.parametrize(
    ("url", "secret", "events", "message"),
    [
        ("ftp://example.com/x", SECRET, ["completed"], "webhook url must be an http"),
        ("https://example.com/x", "short", ["completed"], "webhook secret must be 16-512 bytes"),
        ("https://example.com/x", SECRET, ["exploded"], "webhook events must be some of"),
        ("https://example.com/x", SECRET, [], "webhook events must be some of"),
    ],
)
def test_bad_webhooks_are_refused(client, conn, url, secret, events, message):
    with pytest.raises(skiplock.InvalidInput, match=message):
        client.add_webhook(url, secret, events=events)
    assert conn.execute("SELECT count(*) FROM skiplock.webhook").fetchone() == (0,)


def test_signature_recipe():
    body = b'{"event":"completed"}'
    headers = {"skiplock-timestamp": "1700000000", "skiplock-signature": sign(SECRET, 1700000000, body)}
    assert verify(SECRET, headers, body, now=1700000100)
    assert not verify(SECRET, headers, body, now=1700000400)  # older than the 5-minute tolerance
    assert not verify(SECRET, headers, body + b" ", now=1700000100)


def test_live_transitions_enqueue_deliveries_while_a_webhook_wants_them(client, conn, receiver):
    """Pass: a webhook on enqueued/started/retried/progress gets one delivery per job and event,
    from triggers that exist only while it does; deliveries never call webhooks themselves."""
    hook = client.add_webhook(
        receiver.url, SECRET, events=["enqueued", "started", "retried", "progress"], queues=["q"]
    )
    job = client.enqueue("t", {}, queue="q")
    job_id, token = conn.execute(
        "SELECT id, lease_token FROM skiplock.claim('{q}', gen_random_uuid())"
    ).fetchone()
    conn.execute("SELECT skiplock.set_progress(ARRAY[%s::bigint], ARRAY[%s::uuid], '{40}')", [job_id, token])
    conn.execute("SELECT skiplock.fail(%s, %s, 'flaky')", [job_id, token])
    client.enqueue("t", {}, queue="other")  # not its queue
    events = conn.execute(
        "SELECT args ->> 'event', (args ->> 'job_id')::bigint FROM skiplock.job"
        " WHERE task = 'skiplock.deliver_webhook' ORDER BY id"
    ).fetchall()
    assert events == [("enqueued", job.id), ("started", job.id), ("progress", job.id), ("retried", job.id)]
    claimed = conn.execute(
        "SELECT count(*) FROM skiplock.claim('{skiplock.webhooks}', gen_random_uuid(), 10)"
    )
    assert claimed.fetchone() == (4,)
    assert conn.execute(
        "SELECT count(*) FROM skiplock.job WHERE task = 'skiplock.deliver_webhook'"
    ).fetchone() == (4,)
    triggers = "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'skiplock_webhooks%'"
    assert conn.execute(triggers).fetchone() == (2,)  # inserted and updated; no final state wanted
    client.remove_webhook(hook)
    assert conn.execute(triggers).fetchone() == (0,)
