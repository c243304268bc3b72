"""The Python snippets of docs/fastapi.md are copied from examples/fastapi_app.py, which
tests/examples/test_examples.py runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fastapi_doc_snippets_come_from_the_tested_example():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "fastapi.md").read_text(), flags=re.S)
    assert len(blocks) == 2
    source = (ROOT / "examples" / "fastapi_app.py").read_text()
    for block in blocks:
        # Whitespace aside: ruff formats the page's snippets as top-level code.
        assert _squeezed(block) in _squeezed(source), block


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)
