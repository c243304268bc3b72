"""The examples in examples/ run against the real database and do what their docstrings say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from waiting import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_fastapi_app_enqueues_in_the_request_transaction_and_runs_a_worker_in_its_lifespan(dsn, conn):
    """Pass: an order and its receipt job commit together and the lifespan's worker runs the job;
    a request that fails after both writes leaves neither; a bad body writes nothing."""
    app = load("fastapi_app").create_app(dsn)
    with TestClient(app) as http:
        placed = http.post("/orders", json={"email": "ada@example.com", "cents": 1250})
        assert placed.status_code == 201
        job_id = placed.json()["job_id"]
        done = wait_until(
            lambda: (r := http.get(f"/jobs/{job_id}").json())["state"] == "completed" and r,
            what="receipt sent",
        )
        assert done["result"] == f"receipt for order {placed.json()['order_id']} sent to ada@example.com"
        assert http.post("/orders", json={"email": "bob@invalid.example", "cents": 5}).status_code == 422
        assert http.post("/orders", json={"email": "eve@example.com", "cents": 0}).status_code == 422
        assert http.get("/jobs/999999").status_code == 404
    assert conn.execute("SELECT count(*) FROM example_orders").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM skiplock.jobs WHERE task = 'send_receipt'").fetchone() == (1,)


def test_sqlalchemy_sync_example(
    dsn, conn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Pass: the signup and its job commit together; a duplicate signup leaves no second job."""
    monkeypatch.setenv("SKIPLOCK_DSN", dsn)
    load("sqlalchemy_sync").main()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "second signup refused: IntegrityError"
    assert out[1].startswith("signups: 1, welcome job ")
    assert out[1].endswith(": available")
    assert conn.execute("SELECT count(*) FROM skiplock.jobs WHERE task = 'send_welcome'").fetchone() == (1,)
