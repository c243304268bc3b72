"""The dashboard in a real browser: headless Chromium (Debian's chromium and chromium-driver)
through selenium, against `skiplock web` served by uvicorn in a subprocess, on a real database.

One browser for the whole session. Set SKIPLOCK_WEB_SCREENSHOTS=docs/img to write the
screenshots of docs/web.md while the page test runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from web_seed import HOSTILE, seed_every_state, seed_hostile

import skiplock

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="headless browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
    pytest.mark.subprocess,
]
webdriver = pytest.importorskip("selenium.webdriver", reason="the test extra's selenium is not installed")
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

SHOTS = os.environ.get("SKIPLOCK_WEB_SCREENSHOTS")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1360,900", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def serve(browser: Any, dsn: str, *args: str) -> Iterator[str]:
    """Run `skiplock web` on a free port; yield its base URL once uvicorn says it listens.

    On the way out the browser leaves the dashboard first, so no page keeps polling a server
    that is gone (its failed requests would be logged into the next test).
    """
    env = {**os.environ, "SKIPLOCK_DSN": dsn}
    for name in ("SKIPLOCK_WEB_TOKEN", "SKIPLOCK_WEB_USER", "SKIPLOCK_WEB_PASSWORD"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "skiplock", "web", "--port", "0", "--refresh", "0.5", *args],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:  # ends when the process does
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url, f"skiplock web did not start (exit code {proc.poll()})"
        # Keep reading its log (the access log grows with every poll): a full pipe would block it.
        drain = threading.Thread(target=proc.stderr.read, name="skiplock-web-log", daemon=True)
        drain.start()
        yield url
    finally:
        browser.get("about:blank")
        browser.get_log("browser")
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()


def open_page(browser: Any, url: str, shot: str | None = None) -> None:
    browser.get(url)
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert_inert(browser)
    if SHOTS and shot:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        metrics = {
            "width": 1360,
            "height": min(max(height, 480), 2400),
            "deviceScaleFactor": 1,
            "mobile": False,
        }
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", metrics
        )  # the whole page, not the window
        browser.save_screenshot(str(Path(SHOTS) / f"web-{shot}.png"))
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def assert_inert(browser: Any) -> None:
    """No alert, no element the hostile corpus tried to inject, no refused inline code."""
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - the access is the check
    # Read in one script each: the live fragments may replace elements between two WebDriver calls.
    injected = browser.execute_script(
        "return [...document.querySelectorAll('[id^=pwned], iframe, script:not([src]), [onerror], [onload]')]"
        ".map(e => e.outerHTML)"
    )
    assert not injected, injected
    hrefs = browser.execute_script(
        "return [...document.querySelectorAll('[href]')].map(a => a.getAttribute('href'))"
    )
    assert not [h for h in hrefs if not h.startswith("/")], hrefs  # every link stays on the dashboard
    problems = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not problems, problems  # CSP refusals and script errors are logged as SEVERE


def text_of(browser: Any, css: str) -> str:
    """The visible text of the first element matching ``css`` ("" when none), read atomically."""
    text = browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css
    )
    return str(text)


def wait(browser: Any) -> Any:
    return WebDriverWait(browser, 10, ignored_exceptions=[StaleElementReferenceException])


def state_of(dsn: str, job_id: int) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT state::text FROM skiplock.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return str(row[0])


def test_every_page_renders_and_refreshes_live(browser, dsn):
    ids = seed_every_state(dsn)
    with serve(browser, dsn, "--write") as url:
        open_page(browser, url + "/", "overview")
        assert text_of(browser, "h1") == "Queues"
        # Live refresh: a queue that appears after the page loaded shows up without a reload.
        with skiplock.Client(dsn) as client:
            client.enqueue("late", queue="arrived-later")
        wait(browser).until(lambda d: "arrived-later" in text_of(d, "#overview"))
        assert_inert(browser)
        open_page(browser, url + "/queue?name=todo", "queue")
        assert "todo" in text_of(browser, "h1")
        open_page(browser, url + "/jobs", "jobs")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")) >= len(ids)
        open_page(browser, f"{url}/job/{ids['failed']}", "job")
        assert "the payment provider said no" in text_of(browser, "#attempts")
        open_page(browser, f"{url}/job/{ids['waiting']}", "workflow")
        nodes = browser.execute_script("return document.querySelectorAll('#graph rect.node').length")
        assert nodes == 2
        open_page(browser, f"{url}/job/{ids['running']}")
        assert "app-1" in text_of(browser, "dl.facts")  # the lease holder
        open_page(browser, url + "/bulk?action=retry&state=failed", "bulk")
        open_page(browser, url + "/schedules", "schedules")
        assert "nightly-report" in text_of(browser, "#schedules")
        open_page(browser, url + "/workers", "workers")
        assert "app-1" in text_of(browser, "#workers")
        open_page(browser, url + "/health", "health")
        checks = text_of(browser, "table.checks")
        for name in ("dead_tuples", "oldest_transaction", "notify_queue", "partitions_ahead"):
            assert name in checks
        assert "job_history_p" in text_of(browser, "#partitions")


def test_search_finds_and_bulk_retry_changes_the_jobs(browser, dsn):
    ids = seed_every_state(dsn)
    with serve(browser, dsn, "--write") as url:
        open_page(browser, url + "/jobs")
        Select(browser.find_element(By.NAME, "state")).select_by_value("failed")
        browser.find_element(By.NAME, "error").send_keys("provider")
        browser.find_element(By.CSS_SELECTOR, "#search button").click()
        wait(browser).until(lambda d: "error=provider" in d.current_url)
        rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
        assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == [str(ids["failed"])]
        browser.find_element(By.ID, "bulk-retry").click()
        wait(browser).until(lambda d: d.find_elements(By.ID, "bulk-count"))
        assert text_of(browser, "#bulk-count").startswith("1 job matches")
        assert state_of(dsn, ids["failed"]) == "failed"  # nothing changes before the confirmation
        browser.find_element(By.ID, "bulk-confirm").click()
        wait(browser).until(lambda d: d.find_elements(By.ID, "notice"))
        assert text_of(browser, "#notice") == "Jobs sent to run again: 1."
        assert_inert(browser)
        assert state_of(dsn, ids["failed"]) == "available"


def test_read_only_refuses_writes(browser, dsn):
    ids = seed_every_state(dsn)
    with serve(browser, dsn) as url:
        open_page(browser, f"{url}/job/{ids['failed']}")
        assert text_of(browser, "#mode") == "read-only"
        assert not browser.find_elements(By.CSS_SELECTOR, "main form")  # no write buttons at all
        # A write forged from the page itself (same origin) is refused too.
        status = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"fetch('/job/{ids['failed']}/retry', {{method: 'POST', body: new URLSearchParams({{csrf: 'x'}})}})"
            ".then(r => done(r.status));"
        )
        assert status == 403
        browser.get_log("browser")  # the refused request is logged: expected here
        open_page(browser, url + "/bulk?action=retry&state=failed")
        assert not browser.find_elements(By.ID, "bulk-confirm")
        assert state_of(dsn, ids["failed"]) == "failed"


def test_hostile_job_data_stays_inert(browser, dsn):
    job_id = seed_hostile(dsn)
    with serve(browser, dsn, "--write") as url:
        for path in (f"/job/{job_id}", "/jobs", "/", f"/jobs?task={HOSTILE['attr']}&queue={HOSTILE['img']}"):
            open_page(browser, url + path)
        open_page(browser, f"{url}/job/{job_id}")
        args = text_of(browser, "#args")
        for value in (HOSTILE["script"], HOSTILE["attr"], HOSTILE["url"], HOSTILE["img"]):
            assert json.dumps(value)[1:-1] in args  # shown as the JSON text it is
        assert "invoice\\u202egnp.exe" in args  # the override is shown, not obeyed
        assert "\\u001b[31mred" in args
        attempts = text_of(browser, "#attempts")
        assert HOSTILE["img"].split(" ")[0] in attempts
        assert HOSTILE["url"] in text_of(browser, "#result")
        assert "<iframe" in text_of(browser, "dl.facts")
