"""docs/webhooks.md: the verification recipe accepts what skiplock signs and refuses the rest."""

from __future__ import annotations

import re
import time
from pathlib import Path

from skiplock.webhooks import sign

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def test_the_documented_recipe_verifies_skiplock_signatures():
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    namespace: dict[str, object] = {}
    exec(compile(block, str(DOC), "exec"), namespace)
    verify = namespace["verify"]
    secret, body, now = "whsec-0123456789abcdef", b'{"event":"failed"}', int(time.time())
    headers = {"Skiplock-Timestamp": str(now), "Skiplock-Signature": sign(secret, now, body)}
    assert verify(secret, headers, body)  # type: ignore[operator]
    assert not verify(secret, headers, body + b"x")  # type: ignore[operator]
    assert not verify("whsec-another-secret-xx", headers, body)  # type: ignore[operator]
    old = {"Skiplock-Timestamp": str(now - 600), "Skiplock-Signature": sign(secret, now - 600, body)}
    assert not verify(secret, old, body)  # type: ignore[operator]
