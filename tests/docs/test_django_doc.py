"""Every Python snippet of docs/django.md is copied from the Django project the tests run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_django_doc_snippets_come_from_the_tested_project():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "django.md").read_text(), flags=re.S)
    assert len(blocks) == 4
    sources = "\n".join(p.read_text() for p in (ROOT / "tests" / "django_project").rglob("*.py"))
    for block in blocks:
        # Whitespace aside: ruff formats the page's snippets as top-level code.
        assert _squeezed(block) in _squeezed(sources), block


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)
