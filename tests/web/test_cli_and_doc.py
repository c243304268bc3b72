"""`skiplock web`'s refusals, its loopback Host check, and the example of docs/web.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from starlette.testclient import TestClient
from typer.testing import CliRunner

import skiplock.web
from skiplock.cli import app as cli
from skiplock.cli.web import allowed_hosts, is_loopback

DOC = Path(__file__).resolve().parents[2] / "docs" / "web.md"


def test_a_public_address_needs_authentication(dsn, monkeypatch):
    for name in ("SKIPLOCK_WEB_TOKEN", "SKIPLOCK_WEB_USER", "SKIPLOCK_WEB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli, ["web", "--dsn", dsn, "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "refusing to serve 0.0.0.0 without authentication" in result.output
    monkeypatch.setenv("SKIPLOCK_WEB_TOKEN", "short")
    result = CliRunner().invoke(cli, ["web", "--dsn", dsn, "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "SKIPLOCK_WEB_TOKEN: use at least 16 characters" in result.output


def test_loopback_detection():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.com", "127.0.0.1.nip.io"):
        assert not is_loopback(host), host
    assert allowed_hosts("0.0.0.0") is None


def test_a_loopback_dashboard_refuses_other_host_names(dsn):
    # DNS rebinding: a page on evil.example resolving its name to 127.0.0.1 sends Host: evil.example.
    with TestClient(skiplock.web.app(dsn, allowed_hosts=allowed_hosts("127.0.0.1"))) as client:
        assert client.get("/static/dashboard.css", headers={"host": "evil.example"}).status_code == 400
        assert client.get("/static/dashboard.css", headers={"host": "127.0.0.1:8325"}).status_code == 200
        assert client.get("/static/dashboard.css", headers={"host": "localhost:8325"}).status_code == 200


def test_the_mounting_example_of_the_docs_runs(dsn):
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    token = {"authorization": "Bearer a-long-random-token-1234"}
    for name in ("api", "site"):
        namespace: dict[str, Any] = {"dsn": dsn}
        exec(compile(block, str(DOC), "exec"), namespace)
        with TestClient(namespace[name]) as client:
            assert client.get("/ops/skiplock/", headers=token).status_code == 200
            assert client.get("/ops/skiplock/").status_code == 401
            assert client.get("/ops/skiplock/jobs", headers=token).status_code == 200
            # What the docs tell a host application to do when it stops (in its own event loop).
            client.portal.call(namespace["dashboard"].state.dashboard.close)


def test_the_served_dashboard_never_logs_or_shows_the_password(dsn):
    # The in-process log records are checked by the suite; this is the real server's own output.
    password = conninfo_to_dict(dsn)["password"]
    broken = make_conninfo(dsn, dbname="skiplock_web_no_such_db")  # its errors still name the DSN's parts
    env = {**os.environ, "SKIPLOCK_DSN": broken}
    for name in ("SKIPLOCK_WEB_TOKEN", "SKIPLOCK_WEB_USER", "SKIPLOCK_WEB_PASSWORD"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "skiplock", "web", "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None  # uvicorn's access log goes to stdout, the rest to stderr
    log = []
    try:
        for line in proc.stdout:  # ends when the process does
            log.append(line)
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                break
        assert found, "".join(log)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(found.group(1) + "/", timeout=30)
        page = refused.value.read().decode()
        assert refused.value.code == 503
        assert "database unavailable" in page
        assert password not in page
    finally:
        proc.terminate()
        log.append(proc.stdout.read())
        proc.wait(timeout=20)
        proc.stdout.close()
    output = "".join(log)
    assert "password=***" in output or ":***@" in output  # the startup line names the DSN, redacted
    assert '"GET / HTTP/1.1" 503' in output
    assert password not in output
