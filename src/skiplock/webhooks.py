"""Webhook signatures and delivery: what a worker sends, and how a receiver checks it.

A delivery is a ``POST`` of a JSON body with three headers:

``Skiplock-Timestamp``
    when it was signed, in Unix seconds (the database's clock);
``Skiplock-Signature``
    ``v1=`` and the hex HMAC-SHA256 of ``"{timestamp}.{body}"`` keyed with the webhook's secret;
``Skiplock-Delivery``
    the id of the delivery job: the same on every retry, so a receiver can drop duplicates.

A receiver recomputes the signature over the raw body, compares it in constant time and refuses
old timestamps (replays)::

    ok = skiplock.webhooks.verify(secret, request.headers, raw_body, now=time.time())
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from skiplock.errors import Fail

__all__ = ["WebhookRejected", "post", "sign", "verify"]

#: A 4xx answer other than these means the receiver refuses the delivery for good.
_RETRYABLE_4XX = {408, 425, 429}


class WebhookRejected(Fail):
    """The receiver answered 4xx: the delivery fails without retries (retrying would not help)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Skiplock-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance: float = 300
) -> bool:
    """Whether ``body`` with ``headers`` was signed with ``secret`` less than ``tolerance`` seconds
    before ``now`` (pass ``time.time()``). Header names are matched case-insensitively."""
    lowered = {k.lower(): v for k, v in headers.items()}
    stamp, signature = lowered.get("skiplock-timestamp", ""), lowered.get("skiplock-signature", "")
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(stamp), body), signature)


def post(
    url: str, secret: str, timestamp: int, delivery_id: int, payload: Mapping[str, Any], timeout: float = 10
) -> int:
    """Send one signed delivery (blocking; run it in a thread). Returns the HTTP status.

    Raises:
        WebhookRejected: a 4xx answer (but 408, 425, 429): not retried.
        OSError: no answer, a timeout, or a 5xx / retryable 4xx: retried with backoff.
    """
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "skiplock-webhooks",
            "Skiplock-Timestamp": str(timestamp),
            "Skiplock-Signature": sign(secret, timestamp, body),
            "Skiplock-Delivery": str(delivery_id),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in _RETRYABLE_4XX:
            raise WebhookRejected(f"{url} refused the delivery: HTTP {exc.code}") from None
        raise OSError(f"{url} answered HTTP {exc.code}") from None
