"""The dashboard's pages, their live fragments and its write actions.

Every link is built by :func:`link` from a fixed path and URL-encoded query values (queue names and
other data never go into a path segment), prefixed with the mount point. Writes are POSTs that pass
:func:`_guard_write` (write mode, same origin, CSRF token) and answer with a redirect (POST, then
GET), so reloading never repeats one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from skiplock.errors import JobNotFound
from skiplock.models import JobState
from skiplock.web import charts
from skiplock.web.data import CANCEL_STATES, OVERVIEW_STATES, RETRY_STATES, Dashboard
from skiplock.web.filters import FIELDS, FilterError, JobFilter
from skiplock.web.security import CSRF_COOKIE, SESSION_COOKIE, Auth, csrf_ok, csrf_token, is_same_origin

__all__ = ["ROUTES", "base_context", "link"]

STATIC = Path(__file__).resolve().parent / "static"
PAGE_SIZE = 50
_MAX_FORM = 64 * 1024
BULK_CAP = 10_000  # jobs one bulk action touches at most; run it again for more
_NOTICES = {
    "paused": "Queue paused.",
    "resumed": "Queue resumed.",
    "limits": "Limits saved.",
    "retried": "Jobs sent to run again: {n}.",
    "cancelled": "Jobs cancelled or asked to stop: {n}.",
    "schedule_paused": "Schedule paused.",
    "schedule_resumed": "Schedule resumed.",
    "logged_out": "Signed out.",
}
NAV = (("overview", "/", "Overview"), ("jobs", "/jobs", "Jobs"), ("schedules", "/schedules", "Schedules"),
       ("workers", "/workers", "Workers"), ("health", "/health", "Postgres health"))  # fmt: skip


def link(request: Request, path: str, query: Mapping[str, object] | None = None) -> str:
    """``path`` under the application's mount point, with ``query`` URL-encoded."""
    url = str(request.scope.get("root_path", "")) + path
    pairs = {k: str(v) for k, v in (query or {}).items() if v is not None and v != ""}
    return url + ("?" + urlencode(pairs) if pairs else "")


_BIGINT_MAX = 2**63 - 1


def _id(text: str) -> int | None:
    """``text`` as a job id (ASCII digits, within bigint), or None when it cannot be one.

    ``str.isdigit`` alone also accepts "²" and digits ``int`` then refuses, or so many that ``int``
    refuses them too.
    """
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return None
    value = int(text)
    return value if value <= _BIGINT_MAX else None


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def base_context(request: Request, section: str) -> dict[str, Any]:
    state = request.app.state
    notice = _NOTICES.get(request.query_params.get("notice", ""), "")
    count = _id(request.query_params.get("n", "")) or 0
    return {
        "request": request,
        "section": section,
        "nav": NAV,
        "link": lambda path, **query: link(request, path, query),
        "static": lambda name: link(request, "/static/" + name),
        "csrf": csrf_token(state.secret, request.scope["state"]["csrf_cookie"]),
        "write": _dashboard(request).write,
        "role": _dashboard(request).role,
        "refresh_s": state.refresh_s,
        "notice": notice.format(n=count) if notice else "",
        "can_logout": state.auth is not None and state.auth.token is not None,
    }


def _render(request: Request, template: str, section: str, status: int = 200, **values: Any) -> HTMLResponse:
    context = base_context(request, section)
    context.update(values)
    html = request.app.state.templates.get_template(template).render(context)
    return HTMLResponse(html, status_code=status)


def _back(request: Request, path: str, **query: object) -> RedirectResponse:
    return RedirectResponse(link(request, path, query), status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """An HTML form post (URL-encoded, at most 64 kB): the last value of each field.

    Parsed here rather than with python-multipart: the dashboard's forms are all URL-encoded.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise FilterError(f"form: expected application/x-www-form-urlencoded, got {kind[:60]!r}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            raise FilterError("form: too large")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=100, strict_parsing=False
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise FilterError(f"form: cannot be read ({exc})") from None
    return dict(pairs)


async def _guard_write(request: Request) -> dict[str, str]:
    """The form of a write request that may proceed; PermissionError (403) otherwise."""
    if not _dashboard(request).write:
        raise PermissionError("this dashboard is read-only (start it with --write to allow changes)")
    if not is_same_origin(request):
        raise PermissionError("refused: the request came from another site")
    form = await _form(request)
    if not csrf_ok(request.app.state.secret, request.cookies.get(CSRF_COOKIE), form.get("csrf")):
        raise PermissionError("refused: missing or wrong CSRF token (reload the page and try again)")
    return form


def _field(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


# ---- overview and queues -----------------------------------------------------------------


async def overview(request: Request) -> Response:
    return _render(request, "overview.html", "overview", **await _overview_values(request))


async def overview_fragment(request: Request) -> Response:
    return _render(request, "_overview.html", "overview", **await _overview_values(request))


async def _overview_values(request: Request) -> dict[str, Any]:
    dashboard = _dashboard(request)
    queues = await dashboard.overview()
    samples = list(dashboard.samples)
    trends = {
        q.name: charts.trend(
            [s.backlog.get(q.name, 0) for s in samples], [s.completed.get(q.name, 0.0) for s in samples]
        )
        for q in queues
    }
    return {"queues": queues, "trends": trends, "states": OVERVIEW_STATES}


async def queue_page(request: Request) -> Response:
    return _render(request, "queue.html", "overview", **await _queue_values(request))


async def queue_fragment(request: Request) -> Response:
    return _render(request, "_queue.html", "overview", **await _queue_values(request))


async def _queue_values(request: Request) -> dict[str, Any]:
    name = request.query_params.get("name", "")
    if not name:
        raise FilterError("name: which queue? (/queue?name=...)")
    dashboard = _dashboard(request)
    summary = next((q for q in await dashboard.overview() if q.name == name), None)
    row = await dashboard.queue(name)
    return {"name": name, "summary": summary, "row": row, "states": OVERVIEW_STATES}


async def queue_pause(request: Request) -> Response:
    form = await _guard_write(request)
    name = _field(form, "name")
    await _dashboard(request).pause_queue(name)
    return _back(request, "/queue", name=name, notice="paused")


async def queue_resume(request: Request) -> Response:
    form = await _guard_write(request)
    name = _field(form, "name")
    await _dashboard(request).resume_queue(name)
    return _back(request, "/queue", name=name, notice="resumed")


def _number(form: Mapping[str, str], name: str, kind: type[int] | type[float]) -> int | float | None:
    text = _field(form, name)
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise FilterError(f"{name}: not a number: {text[:40]!r}") from None


async def queue_limits(request: Request) -> Response:
    form = await _guard_write(request)
    name = _field(form, "name")
    await _dashboard(request).set_queue_limits(
        name,
        concurrency=_number(form, "concurrency", int),
        rate=_number(form, "rate", float),
        burst=_number(form, "burst", int),
        key_arg=_field(form, "key_arg") or None,
        per_key=_number(form, "per_key", int),
        key_rate=_number(form, "key_rate", float),
        key_burst=_number(form, "key_burst", int),
    )
    return _back(request, "/queue", name=name, notice="limits")


# ---- jobs ----------------------------------------------------------------------------------


def _before_id(request: Request) -> int | None:
    text = request.query_params.get("before_id", "")
    if not text:
        return None
    before_id = _id(text)
    if before_id is None:
        raise FilterError("before_id: must be a job id")
    return before_id


async def jobs(request: Request) -> Response:
    flt = JobFilter.parse(request.query_params)
    before_id = _before_id(request)
    page = await _dashboard(request).search(flt, before_id=before_id, limit=PAGE_SIZE)
    older = page.older
    next_link = link(request, "/jobs", {**flt.form(), "before_id": older}) if older is not None else None
    return _render(
        request, "jobs.html", "jobs",
        jobs=page.jobs, flt=flt, form=flt.form(), next_link=next_link, first_page=before_id is None,
        searched=page.searched, window=_dashboard(request).search_window,
        states=[s.value for s in JobState],
        retry_link=link(request, "/bulk", {**flt.form(), "action": "retry"}),
        cancel_link=link(request, "/bulk", {**flt.form(), "action": "cancel"}),
    )  # fmt: skip


async def job_page(request: Request) -> Response:
    return _render(request, "job.html", "jobs", **await _job_values(request))


async def job_fragment(request: Request) -> Response:
    return _render(request, "_job.html", "jobs", **await _job_values(request))


async def _job_values(request: Request) -> dict[str, Any]:
    job_id = int(request.path_params["job_id"])
    dashboard = _dashboard(request)
    job = await dashboard.job(job_id)
    nodes = await dashboard.graph(job_id)
    holder = None
    if job.worker_id is not None:
        holder = next((w for w in await dashboard.workers() if w.id == job.worker_id), None)
    graph = charts.layout_graph(nodes, job_id) if len(nodes) > 1 else None
    return {"job": job, "holder": holder, "graph": graph, "nodes": nodes,
            "can_retry": job.state in RETRY_STATES, "can_cancel": job.state in CANCEL_STATES}  # fmt: skip


async def job_retry(request: Request) -> Response:
    await _guard_write(request)
    job_id = int(request.path_params["job_id"])
    done = await _dashboard(request).retry([job_id])
    return _back(request, f"/job/{job_id}", notice="retried", n=len(done))


async def job_cancel(request: Request) -> Response:
    await _guard_write(request)
    job_id = int(request.path_params["job_id"])
    done = await _dashboard(request).cancel([job_id])
    return _back(request, f"/job/{job_id}", notice="cancelled", n=len(done))


def _action(value: str) -> str:
    if value not in ("retry", "cancel"):
        raise FilterError("action: must be retry or cancel")
    return value


async def bulk_confirm(request: Request) -> Response:
    """Show how many jobs the action would touch before anything changes."""
    action = _action(request.query_params.get("action", ""))
    flt = JobFilter.parse(request.query_params)
    count, max_id = await _dashboard(request).count(flt, action, BULK_CAP)
    states = RETRY_STATES if action == "retry" else CANCEL_STATES
    return _render(
        request, "bulk.html", "jobs",
        action=action, flt=flt, form=flt.form(), count=min(count, BULK_CAP), more=count > BULK_CAP,
        max_id=max_id, cap=BULK_CAP, states=[s.value for s in states],
        search_link=link(request, "/jobs", flt.form()),
    )  # fmt: skip


async def bulk(request: Request) -> Response:
    form = await _guard_write(request)
    action = _action(_field(form, "action"))
    flt = JobFilter.parse({name: _field(form, name) for name in FIELDS})
    max_id = _id(_field(form, "max_id"))
    if max_id is None:
        raise FilterError("max_id: confirm the action from its confirmation page")
    done = await _dashboard(request).bulk(action, flt, max_id=max_id, cap=BULK_CAP)
    notice = "retried" if action == "retry" else "cancelled"
    return _back(request, "/jobs", **flt.form(), notice=notice, n=done)


# ---- schedules, workers, health ------------------------------------------------------------


async def schedules(request: Request) -> Response:
    return _render(request, "schedules.html", "schedules", schedules=await _dashboard(request).schedules())


async def schedule_pause(request: Request) -> Response:
    form = await _guard_write(request)
    if not await _dashboard(request).pause_schedule(_field(form, "name")):
        raise JobNotFound("no schedule with that name")
    return _back(request, "/schedules", notice="schedule_paused")


async def schedule_resume(request: Request) -> Response:
    form = await _guard_write(request)
    if not await _dashboard(request).resume_schedule(_field(form, "name")):
        raise JobNotFound("no schedule with that name")
    return _back(request, "/schedules", notice="schedule_resumed")


async def workers(request: Request) -> Response:
    return _render(request, "workers.html", "workers", workers=await _dashboard(request).workers())


async def workers_fragment(request: Request) -> Response:
    return _render(request, "_workers.html", "workers", workers=await _dashboard(request).workers())


async def health(request: Request) -> Response:
    return _render(request, "health.html", "health", **await _dashboard(request).health())


async def health_fragment(request: Request) -> Response:
    return _render(request, "_health.html", "health", **await _dashboard(request).health())


# ---- login ---------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    auth: Auth | None = request.app.state.auth
    if request.method == "GET":
        return _render(request, "login.html", "", error="", has_token=bool(auth and auth.token))
    if not is_same_origin(request):
        raise PermissionError("refused: the request came from another site")
    form = await _form(request)
    token = _field(form, "token")
    if auth is None or auth.session_value is None or not auth.check_token(token):
        return _render(request, "login.html", "", status=401, error="wrong token", has_token=True)
    response = _back(request, "/")
    response.set_cookie(
        SESSION_COOKIE, auth.session_value, httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path=request.scope.get("root_path") or "/",
    )  # fmt: skip
    return response


async def logout(request: Request) -> Response:
    if not is_same_origin(request):
        raise PermissionError("refused: the request came from another site")
    response = _back(request, "/login", notice="logged_out")
    response.delete_cookie(SESSION_COOKIE, path=request.scope.get("root_path") or "/")
    return response


ROUTES: list[BaseRoute] = [
    Route("/", overview, name="overview"),
    Route("/fragment/overview", overview_fragment),
    Route("/queue", queue_page, name="queue"),
    Route("/fragment/queue", queue_fragment),
    Route("/queue/pause", queue_pause, methods=["POST"]),
    Route("/queue/resume", queue_resume, methods=["POST"]),
    Route("/queue/limits", queue_limits, methods=["POST"]),
    Route("/jobs", jobs, name="jobs"),
    Route("/job/{job_id:int}", job_page, name="job"),
    Route("/fragment/job/{job_id:int}", job_fragment),
    Route("/job/{job_id:int}/retry", job_retry, methods=["POST"]),
    Route("/job/{job_id:int}/cancel", job_cancel, methods=["POST"]),
    Route("/bulk", bulk_confirm, methods=["GET"]),
    Route("/bulk", bulk, methods=["POST"]),
    Route("/schedules", schedules, name="schedules"),
    Route("/schedule/pause", schedule_pause, methods=["POST"]),
    Route("/schedule/resume", schedule_resume, methods=["POST"]),
    Route("/workers", workers, name="workers"),
    Route("/fragment/workers", workers_fragment),
    Route("/health", health, name="health"),
    Route("/fragment/health", health_fragment),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]
