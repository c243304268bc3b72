"""tools/async_to_sync.py: the sync twins are exactly what the generator writes from their sources,
and the generator's rules (standard-library tokenizer, no private API) do what its docstring says."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("async_to_sync", ROOT / "tools" / "async_to_sync.py")
assert _spec is not None
assert _spec.loader is not None
generator = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generator)


def test_the_committed_twins_are_byte_identical_to_the_generated_ones():
    done = subprocess.run(
        [sys.executable, "tools/async_to_sync.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_keywords_go_with_their_space_and_names_are_renamed_in_code_and_exact_strings():
    source = (
        "async def f(pool: AsyncConnectionPool) -> AsyncIterator[int]:\n"
        "    async with AsyncThing() as t:  # AsyncThing stays in this comment\n"
        "        print(await t.get('AsyncClient'), 'an AsyncClient', f'{x}')\n"
        "    return await   g()\n"
    )
    assert generator.unasync_source(source) == (
        "def f(pool: ConnectionPool) -> Iterator[int]:\n"
        "    with SyncThing() as t:  # AsyncThing stays in this comment\n"
        "        print(t.get('Client'), 'an AsyncClient', f'{x}')\n"
        "    return g()\n"
    )


def test_a_stale_twin_fails_the_check(tmp_path: Path, monkeypatch):
    source = tmp_path / "thing_async.py"
    source.write_text("async def run() -> None:\n    await go()\n", encoding="utf-8")
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    monkeypatch.setattr(generator, "SOURCES", ["thing_async.py"])
    monkeypatch.setattr(sys, "argv", ["async_to_sync.py"])
    assert generator.main() == 0
    assert (tmp_path / "thing.py").read_text(encoding="utf-8").endswith("def run() -> None:\n    go()\n")
    (tmp_path / "thing.py").write_text("def run() -> None:\n    stale()\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["async_to_sync.py", "--check"])
    assert generator.main() == 1
