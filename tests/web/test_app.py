"""The dashboard in process (Starlette's TestClient) on a real database: pages, auth, CSRF,
read-only refusal, security headers, the password never shown, mounting, bulk actions."""

from __future__ import annotations

import base64
import re

import psycopg
import pytest
from fastapi import FastAPI
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from web_seed import HOSTILE, csrf_of, seed_hostile

import skiplock
import skiplock.web
from skiplock.web.security import CSP, Auth

PAGES = ["/", "/fragment/overview", "/jobs", "/schedules", "/workers", "/fragment/workers", "/health",
         "/fragment/health", "/queue?name=dead", "/fragment/queue?name=dead"]  # fmt: skip
TOKEN = "t0ken-for-tests-only-0123456789"


def state_of(conn: psycopg.Connection, job_id: int) -> str:
    row = conn.execute("SELECT state::text FROM skiplock.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return str(row[0])


def password_of(dsn: str) -> str:
    password = conninfo_to_dict(dsn).get("password")
    assert password, "the suite's DSN carries a canary password"
    return str(password)


def test_every_page_renders_with_every_state(make_client, seeded, dsn):
    canary = password_of(dsn)
    client = make_client()
    for path in [*PAGES, *(f"/job/{job_id}" for job_id in seeded.values())]:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[-500:])
        assert canary not in response.text
    overview = client.get("/").text
    for queue in ("done", "dead", "gone", "busy", "again", "todo", "flow"):
        assert f"/queue?name={queue}" in overview
    job = client.get(f"/job/{seeded['failed']}").text
    assert "the payment provider said no" in job
    assert "Traceback (most recent call last)" in job
    waiting = client.get(f"/job/{seeded['waiting']}").text
    assert 'id="graph"' in waiting
    assert f"/job/{seeded['parent']}" in waiting


def test_security_headers_on_pages_errors_and_static(make_client, seeded):
    client = make_client()
    for path in ["/", "/job/999999", "/static/htmx.min.js", "/nowhere"]:
        response = client.get(path)
        assert response.headers["content-security-policy"] == CSP, path
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/job/999999").status_code == 404
    assert "frame-ancestors 'none'" in CSP
    assert "'unsafe-inline'" not in CSP
    cookie = make_client().get("/").headers["set-cookie"]
    assert "skiplock_csrf=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie


def test_read_only_refuses_every_write_and_changes_nothing(make_client, seeded, conn):
    client = make_client()  # read-only is the default
    page = client.get(f"/job/{seeded['failed']}").text
    assert "retry now" not in page  # no write buttons
    token = "any"  # refused before the token is even looked at
    posts = [
        (f"/job/{seeded['failed']}/retry", {}),
        (f"/job/{seeded['available']}/cancel", {}),
        ("/queue/pause", {"name": "todo"}),
        ("/queue/limits", {"name": "todo", "concurrency": "1"}),
        ("/bulk", {"action": "retry", "state": "failed", "max_id": "999999"}),
        ("/schedule/pause", {"name": "x"}),
    ]
    for path, fields in posts:
        response = client.post(path, data={**fields, "csrf": token})
        assert response.status_code == 403, path
        assert "read-only" in response.text
    assert state_of(conn, seeded["failed"]) == "failed"
    assert state_of(conn, seeded["available"]) == "available"
    assert conn.execute("SELECT count(*) FROM skiplock.queue WHERE paused_at IS NOT NULL").fetchone() == (0,)


def test_writes_need_the_csrf_token_of_this_browser_and_the_same_site(make_client, seeded, conn):
    client = make_client(write=True)
    page = client.get(f"/job/{seeded['failed']}").text
    token = csrf_of(page)
    retry = f"/job/{seeded['failed']}/retry"
    assert client.post(retry).status_code == 403  # no token
    assert client.post(retry, data={"csrf": "0" * 64}).status_code == 403  # a forged one
    other = make_client(write=True)  # another browser: its own cookie, so this token is not its
    other.get("/")
    assert other.post(retry, data={"csrf": token}).status_code == 403
    cross = client.post(retry, data={"csrf": token}, headers={"origin": "http://evil.example"})
    assert cross.status_code == 403
    cross = client.post(retry, data={"csrf": token}, headers={"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    assert state_of(conn, seeded["failed"]) == "failed"
    done = client.post(
        retry, data={"csrf": token}, headers={"origin": "http://127.0.0.1"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert state_of(conn, seeded["failed"]) == "available"
    assert "Jobs sent to run again: 1." in client.get(done.headers["location"]).text


def test_queue_pause_resume_and_limits_through_the_sql_functions(make_client, seeded, conn):
    client = make_client(write=True)
    token = csrf_of(client.get("/queue?name=todo").text)
    assert client.post("/queue/pause", data={"csrf": token, "name": "todo"}).status_code == 200
    # The badge, not the notice: the overview the page shows is re-read after a write.
    assert '<span class="badge paused">paused</span>' in client.get("/queue?name=todo").text
    row = conn.execute("SELECT paused_at IS NOT NULL FROM skiplock.queue WHERE name = 'todo'").fetchone()
    assert row == (True,)
    client.post("/queue/resume", data={"csrf": token, "name": "todo"})
    assert '<span class="badge paused">paused</span>' not in client.get("/queue?name=todo").text
    row = conn.execute("SELECT paused_at IS NULL FROM skiplock.queue WHERE name = 'todo'").fetchone()
    assert row == (True,)
    fields = {
        "csrf": token,
        "name": "todo",
        "concurrency": "3",
        "rate": "2.5",
        "key_arg": "tenant",
        "per_key": "1",
    }
    assert client.post("/queue/limits", data=fields).status_code == 200
    row = conn.execute(
        "SELECT concurrency_limit, rate_limit, key_arg, key_concurrency_limit FROM skiplock.queue WHERE name = 'todo'"
    ).fetchone()
    assert row == (3, 2.5, "tenant", 1)
    bad = client.post("/queue/limits", data={"csrf": token, "name": "todo", "concurrency": "three"})
    assert bad.status_code == 400
    assert "concurrency: not a number" in bad.text
    negative = client.post("/queue/limits", data={"csrf": token, "name": "todo", "concurrency": "-1"})
    assert negative.status_code == 400
    assert conn.execute("SELECT concurrency_limit FROM skiplock.queue WHERE name = 'todo'").fetchone() == (3,)


def test_a_write_shows_on_the_shared_overview_at_once(make_client, seeded):
    # The overview is shared by every open page for a second; a write must not wait that out.
    client = make_client(write=True)
    paused = re.compile(r'name=todo">todo</a>\s*<span class="badge paused">')
    assert not paused.search(client.get("/fragment/overview").text)
    token = csrf_of(client.get("/queue?name=todo").text)
    done = client.post("/queue/pause", data={"csrf": token, "name": "todo"}, follow_redirects=False)
    assert done.status_code == 303
    assert paused.search(client.get("/fragment/overview").text)
    client.post("/queue/resume", data={"csrf": token, "name": "todo"}, follow_redirects=False)
    assert not paused.search(client.get("/fragment/overview").text)


def test_ids_that_are_not_job_ids_get_one_clear_line(make_client, seeded, conn):
    # "²" passes str.isdigit() but not int(); int() refuses 5,000 digits; bigint stops at 19.
    client = make_client(write=True)
    for odd in ("\u00b2", "9" * 5000, "9" * 20):
        assert client.get("/", params={"notice": "retried", "n": odd}).status_code == 200
        page = client.get("/jobs", params={"before_id": odd})
        assert page.status_code == 400
        assert "before_id: must be a job id" in page.text
    token = csrf_of(client.get("/queue?name=todo").text)
    for odd in ("\u00b2", "9" * 5000):
        done = client.post("/bulk", data={"csrf": token, "action": "retry", "state": "failed", "max_id": odd})
        assert done.status_code == 400
        assert "max_id: confirm the action from its confirmation page" in done.text
    assert state_of(conn, seeded["failed"]) == "failed"


def test_bulk_retry_confirms_the_count_and_skips_jobs_failed_after_it(make_client, dsn, conn):
    with skiplock.Client(dsn) as c:
        for i in range(3):
            c.enqueue("charge", {"order": i}, queue="pay")
    rows = conn.execute(
        "SELECT id, lease_token FROM skiplock.claim(ARRAY['pay'], gen_random_uuid(), 10)"
    ).fetchall()
    for job_id, lease in rows:
        conn.execute("SELECT skiplock.fail(%s, %s, 'card declined', retryable => false)", [job_id, lease])
    client = make_client(write=True)
    confirm = client.get("/bulk", params={"action": "retry", "queue": "pay", "error": "DECLINED"})
    assert confirm.status_code == 200
    assert '<p id="bulk-count"><strong>3</strong> jobs' in confirm.text
    token, max_id = csrf_of(confirm.text), max(r[0] for r in rows)
    assert f'name="max_id" value="{max_id}"' in confirm.text
    # A job failing after the confirmation was shown is not part of what was confirmed.
    with skiplock.Client(dsn) as c:
        late = c.enqueue("charge", {"order": 99}, queue="pay").id
    ((job_id, lease),) = conn.execute(
        "SELECT id, lease_token FROM skiplock.claim(ARRAY['pay'], gen_random_uuid(), 1)"
    ).fetchall()
    conn.execute("SELECT skiplock.fail(%s, %s, 'card declined', retryable => false)", [job_id, lease])
    fields = {"csrf": token, "action": "retry", "queue": "pay", "error": "DECLINED", "max_id": str(max_id)}
    done = client.post("/bulk", data=fields, follow_redirects=False)
    assert done.status_code == 303
    assert "n=3" in done.headers["location"]
    states = dict(conn.execute("SELECT id, state::text FROM skiplock.jobs WHERE queue = 'pay'").fetchall())
    assert states.pop(late) == "failed"
    assert set(states.values()) == {"available"}
    assert client.post("/bulk", data={**fields, "max_id": ""}).status_code == 400


def test_bulk_cancel(make_client, seeded, conn):
    client = make_client(write=True)
    confirm = client.get("/bulk", params={"action": "cancel", "queue": "todo"})
    assert "<strong>2</strong> jobs" in confirm.text  # available and scheduled
    max_id = confirm.text.split('name="max_id" value="')[1].split('"')[0]
    fields = {"csrf": csrf_of(confirm.text), "action": "cancel", "queue": "todo", "max_id": max_id}
    assert client.post("/bulk", data=fields).status_code == 200
    assert state_of(conn, seeded["available"]) == "cancelled"
    assert state_of(conn, seeded["scheduled"]) == "cancelled"


def test_search_filters_and_keyset_pages(make_client, dsn):
    with skiplock.Client(dsn) as c:
        ids = c.enqueue_many(
            [skiplock.JobSpec(task="mail", args={"user": i}, queue="mail") for i in range(120)]
        )
    client = make_client()
    first = client.get("/jobs", params={"queue": "mail"}).text
    assert f"/job/{ids[-1]}" in first
    assert f"/job/{ids[-50]}" in first
    assert f'/job/{ids[-51]}"' not in first
    next_link = first.split('id="next-page" href="')[1].split('"')[0].replace("&amp;", "&")
    second = client.get(next_link).text
    assert f'/job/{ids[-51]}"' in second
    assert f'/job/{ids[-50]}"' not in second
    found = client.get("/jobs", params={"args_path": "$.user == 7"}).text
    assert f'/job/{ids[7]}"' in found
    assert found.count('href="/job/') == 1
    bad = client.get("/jobs", params={"args_path": "$$ nope"})
    assert bad.status_code == 400
    assert "jsonpath" in bad.text
    assert client.get("/jobs", params={"state": "bogus"}).status_code == 400
    assert client.get("/jobs", params={"since": "yesterday"}).status_code == 400
    assert client.get("/jobs", params={"before_id": "1 OR 1=1"}).status_code == 400


def test_search_first_page_uses_the_id_indexes(dsn, conn):
    # Enough history that a sequential scan would cost more than walking the id indexes.
    conn.execute(
        "INSERT INTO skiplock.job_history (id, queue, task, args, state, priority, attempt, max_attempts,"
        " run_at, created_at, errors, finished_at)"
        " SELECT nextval('skiplock.job_id_seq'), 'q' || (i % 5), 't', jsonb_build_object('i', i), 'completed',"
        " 0, 1, 1, now(), now(), '[]', now() FROM generate_series(1, 30000) AS i"
    )
    conn.execute("ANALYZE skiplock.job_history")
    from skiplock._sql import QUERIES

    top_plan = "\n".join(
        r[0] for r in conn.execute("EXPLAIN " + QUERIES["web_search_top"].text, {"before_id": None})
    )
    assert "Seq Scan" not in top_plan, top_plan  # one backward probe of each id index
    params = {"queue": "q1", "state": None, "task": None, "args_path": None, "error": None, "since": None,
              "until": None, "top": 30001, "window": 200000, "limit": 51}  # fmt: skip
    plan = "\n".join(
        r[0] for r in conn.execute("EXPLAIN " + QUERIES["web_search_jobs"].text, params).fetchall()
    )
    assert "Limit" in plan.splitlines()[0]
    assert "Merge Append" in plan, plan
    assert "using job_pkey on job" in plan, plan
    assert re.search(r"using job_history_\w+_id_idx on job_history_", plan), plan
    # Every scan is bounded by the window: a filter that matches nothing stops at its floor.
    assert plan.count("Index Cond: ((id < ") == plan.count("Index Scan Backward"), plan
    assert "Seq Scan" not in plan, plan
    assert not re.search(r"^\s*(->\s+)?(Incremental )?Sort  \(", plan, re.M), (
        plan
    )  # the indexes give the order


def test_a_search_page_looks_through_a_bounded_window_and_goes_on(make_client, dsn):
    with skiplock.Client(dsn) as c:
        rare = c.enqueue("report", {"n": 1}, queue="slow").id
        c.enqueue_many([skiplock.JobSpec(task="mail", args={"user": i}, queue="mail") for i in range(30)])
    client = make_client(search_window=10)
    first = client.get("/jobs", params={"queue": "slow"}).text
    assert 'id="no-results"' not in first  # not "no job matches": only the newest ten were examined
    note = first.split('id="searched">')[1].split("</p>")[0]
    assert "No matches among ids" in note
    assert "looks through 10 jobs at most" in note
    pages = 1
    page = first
    while f'/job/{rare}"' not in page:
        assert pages < 5, page
        next_link = page.split('id="next-page" href="')[1].split('"')[0].replace("&amp;", "&")
        assert "search older jobs" in page
        page = client.get(next_link).text
        pages += 1
    assert pages == 4  # 30 newer jobs in windows of ten, then the window that holds it
    assert 'id="next-page"' not in page  # nothing older is left
    assert 'id="searched"' not in page
    # Paging through the whole history finds every match exactly once.
    found, link = [], "/jobs?queue=mail"
    while link:
        page = client.get(link).text
        found += [int(i) for i in re.findall(r'href="/job/(\d+)"', page)]
        link = (
            page.split('id="next-page" href="')[1].split('"')[0].replace("&amp;", "&")
            if 'id="next-page"' in page
            else ""
        )
    assert len(found) == 30
    assert len(set(found)) == 30


def test_token_auth_login_cookie_and_bearer(make_client, seeded):
    client = make_client(auth=Auth(token=TOKEN))
    assert (
        client.get("/", headers={"accept": "text/html"}, follow_redirects=False).headers["location"]
        == "/login"
    )
    assert client.get("/fragment/overview").status_code == 401
    assert client.get("/static/dashboard.css").status_code == 200  # the login page needs its style
    assert client.get("/", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/", headers={"authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    wrong = client.post("/login", data={"token": "nope"})
    assert wrong.status_code == 401
    assert "skiplock_session" not in client.cookies
    login = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert login.status_code == 303
    session = client.cookies["skiplock_session"]
    assert TOKEN not in session  # the cookie is derived from the token, not the token
    assert client.get("/").status_code == 200
    client.post("/logout")
    assert "skiplock_session" not in client.cookies
    assert client.get("/fragment/overview").status_code == 401


def test_basic_auth(make_client, seeded):
    client = make_client(auth=Auth(user="ops", password="correct horse"))
    denied = client.get("/")
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"].startswith("Basic")
    good = base64.b64encode(b"ops:correct horse").decode()
    bad = base64.b64encode(b"ops:wrong horse").decode()
    assert client.get("/", headers={"authorization": f"Basic {good}"}).status_code == 200
    assert client.get("/", headers={"authorization": f"Basic {bad}"}).status_code == 401
    assert client.get("/", headers={"authorization": "Basic %%%"}).status_code == 401


def test_auth_settings_come_from_the_environment_and_are_checked():
    assert Auth.from_env({}) is None
    assert Auth.from_env({"SKIPLOCK_WEB_TOKEN": TOKEN}) == Auth(token=TOKEN)
    with pytest.raises(ValueError, match="at least 16"):
        Auth.from_env({"SKIPLOCK_WEB_TOKEN": "short"})
    with pytest.raises(ValueError, match="both"):
        Auth.from_env({"SKIPLOCK_WEB_USER": "ops"})


def test_hostile_job_data_is_escaped_everywhere(make_client, dsn):
    job_id = seed_hostile(dsn)
    client = make_client(write=True)
    pages = [
        f"/job/{job_id}",
        "/jobs",
        "/",
        "/jobs?task=" + HOSTILE["attr"],
        "/bulk?action=retry&error=" + HOSTILE["img"],
    ]
    for path in pages:
        html = client.get(path).text
        for marker in (
            "<script>alert",
            "<img src=x",
            "<svg id=",
            "<iframe",
            "<b id=",
            'onerror="',
            "\u202e",
            "\x1b",
        ):
            assert marker not in html, (path, marker)
        assert 'href="javascript:' not in html
    detail = client.get(f"/job/{job_id}").text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in detail
    assert "invoice\\u202egnp.exe" in detail  # the override shown, not obeyed


def test_the_password_never_appears_even_in_errors(dsn):
    broken = make_conninfo(dsn, dbname="skiplock_web_no_such_db")
    with TestClient(skiplock.web.app(broken)) as client:
        response = client.get("/")
    assert response.status_code == 503
    assert "database unavailable" in response.text
    assert password_of(dsn) not in response.text


def test_mounted_in_starlette_and_fastapi(dsn, seeded):
    for kind in (Starlette, FastAPI):
        dashboard = skiplock.web.app(dsn)
        host = Starlette(routes=[Mount("/ops/skiplock", app=dashboard)]) if kind is Starlette else FastAPI()
        if isinstance(host, FastAPI):
            host.mount("/ops/skiplock", dashboard)
        with TestClient(host) as client:
            first = client.get("/ops/skiplock/")
            assert "Path=/ops/skiplock;" in first.headers["set-cookie"]  # the CSRF cookie stays in the mount
            page = first.text
            assert 'href="/ops/skiplock/jobs"' in page
            assert 'src="/ops/skiplock/static/htmx.min.js"' in page
            assert 'hx-get="/ops/skiplock/fragment/overview"' in page
            assert client.get("/ops/skiplock/static/htmx.min.js").status_code == 200
            job = client.get(f"/ops/skiplock/job/{seeded['failed']}")
            assert job.status_code == 200
            assert 'href="/ops/skiplock/queue?name=dead"' in job.text
            client.portal.call(dashboard.state.dashboard.close)  # a host's lifespan does not reach it


def test_read_only_runs_as_skiplock_monitor_when_the_role_is_usable(make_client, seeded, dsn):
    skiplock.Migrator(dsn).grant_roles()  # creates the roles where they are missing
    client = make_client()
    health = client.get("/health").text
    assert 'Connected as <span class="mono">skiplock_monitor</span>' in health
    # Least privilege hides other users' sessions, and with them the xmin holder: said, not hidden.
    assert 'id="blind"' in health
    assert "GRANT pg_monitor TO skiplock_monitor" in health
    writer = make_client(write=True)
    as_owner = writer.get("/health").text
    assert 'Connected as <span class="mono">skiplock_monitor</span>' not in as_owner
    assert 'id="blind"' not in as_owner  # the suite's superuser sees every session


def test_read_only_without_the_monitor_role_still_works(dsn, conn, seeded):
    login = f"skiplock_web_nomonitor_{conn.info.backend_pid}"
    conn.execute(f"CREATE ROLE {login} LOGIN")
    conn.execute(f"GRANT USAGE ON SCHEMA skiplock TO {login}")
    conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA skiplock TO {login}")
    try:
        other = make_conninfo(dsn, user=login)
        with TestClient(skiplock.web.app(other)) as client:
            health = client.get("/health").text
            assert f'Connected as <span class="mono">{login}</span>' in health
            assert "role is absent or not granted" in health
            assert client.get("/jobs").status_code == 200
    finally:
        conn.execute(f"DROP OWNED BY {login}")
        conn.execute(f"DROP ROLE {login}")


def test_schedules_show_the_next_tick_and_pause_and_resume(make_client, seeded, conn):
    client = make_client(write=True)
    page = client.get("/schedules").text
    assert "nightly-report" in page
    assert "03:00:00" in page  # the next tick of 0 3 * * *
    token = csrf_of(page)
    assert client.post("/schedule/pause", data={"csrf": token, "name": "nightly-report"}).status_code == 200
    assert conn.execute("SELECT paused FROM skiplock.schedule WHERE name = 'nightly-report'").fetchone() == (
        True,
    )
    assert "Schedule paused." in client.get("/schedules?notice=schedule_paused").text
    assert client.post("/schedule/resume", data={"csrf": token, "name": "nightly-report"}).status_code == 200
    assert conn.execute("SELECT paused FROM skiplock.schedule WHERE name = 'nightly-report'").fetchone() == (
        False,
    )
    missing = client.post("/schedule/pause", data={"csrf": token, "name": "no-such-schedule"})
    assert missing.status_code == 404


def test_a_database_error_is_one_line_and_a_503(dsn, conn):
    """A lock timeout is the statement's failure, not the connection's: a DatabaseError, which the
    dashboard answers with the server's words and 503 (worth retrying), never a traceback."""
    slow = make_conninfo(dsn, options="-c lock_timeout=200ms")
    with conn.transaction():
        conn.execute("LOCK TABLE skiplock.job IN ACCESS EXCLUSIVE MODE")
        with TestClient(skiplock.web.app(slow), raise_server_exceptions=False) as client:
            response = client.get("/")
    assert response.status_code == 503
    assert "database error: canceling statement due to lock timeout" in response.text
    assert "Traceback" not in response.text
    assert password_of(dsn) not in response.text
