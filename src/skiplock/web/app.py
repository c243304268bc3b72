"""The dashboard's ASGI application: the factory, its middleware and its error pages.

:func:`app` builds a Starlette application that runs on its own (``skiplock web``) or mounted in
another ASGI application (Starlette, FastAPI, Django's ASGI handler through a router). Routes live
in :mod:`skiplock.web.routes`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skiplock._driver.conninfo import resolve_dsn
from skiplock._driver.errors import is_input_fault
from skiplock.errors import DatabaseError, DatabaseUnavailable, InvalidInput, JobNotFound, SkiplockError
from skiplock.settings import scrub
from skiplock.web import routes
from skiplock.web.data import SEARCH_WINDOW, Dashboard
from skiplock.web.filters import FilterError
from skiplock.web.render import environment
from skiplock.web.security import CSRF_COOKIE, Auth, SecurityHeaders, new_csrf_cookie

__all__ = ["app"]

log = logging.getLogger("skiplock.web")


def app(
    dsn: str | None = None,
    *,
    write: bool = False,
    auth: Auth | None = None,
    allowed_hosts: Sequence[str] | None = None,
    secret: bytes | None = None,
    refresh_s: float = 2.0,
    search_window: int = SEARCH_WINDOW,
) -> Starlette:
    """Build the dashboard.

    Args:
        dsn: the database (default: ``SKIPLOCK_DSN``, ``DATABASE_URL``, then libpq ``PG*``).
        write: allow retry, cancel, pause, resume and limits; read-only by default, and then the
            connections run as ``skiplock_monitor`` where that role exists.
        auth: who may see it (a token, or basic credentials); None leaves access control to
            whatever serves or mounts the application.
        allowed_hosts: ``Host`` headers to accept (refuses DNS-rebinding requests); None: any.
        secret: the key CSRF tokens are signed with (default: random per process).
        refresh_s: how often pages refresh their live parts.
        search_window: how many jobs one page of the job search looks through at most (by id,
            newest first), which bounds what a page costs however few jobs match.

    The pool opens on the first request; ``await application.state.dashboard.close()`` ends it
    (the application's own lifespan does that when it runs standalone).
    """
    if search_window < 1:
        raise ValueError(f"search_window must be at least 1, not {search_window}")
    dashboard = Dashboard(dsn=dsn, write=write, search_window=search_window)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await dashboard.close()

    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    middleware.append(Middleware(_Guard, auth=auth))
    application = Starlette(
        routes=routes.ROUTES,
        middleware=middleware,
        # Expected failures by class (answered here); anything else reaches Exception, which
        # Starlette answers and then re-raises for the server to log.
        exception_handlers={
            PermissionError: _error,
            FilterError: _error,
            SkiplockError: _error,
            404: _error,
            405: _error,
            Exception: _error,
        },
        lifespan=lifespan,
    )
    application.state.dashboard = dashboard
    application.state.templates = environment()
    application.state.secret = secret or secrets.token_bytes(32)
    application.state.auth = auth
    application.state.refresh_s = refresh_s
    # Only for scrubbing error messages: resolved lazily so a missing DSN is a page, not a crash.
    application.state.dsn_for_scrub = dsn
    return application


class _Guard:
    """Authentication for every route but the login page and static files, and the CSRF cookie."""

    def __init__(self, app: ASGIApp, auth: Auth | None) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        cookie = request.cookies.get(CSRF_COOKIE)
        fresh = cookie is None or not 20 <= len(cookie) <= 100
        scope.setdefault("state", {})["csrf_cookie"] = new_csrf_cookie() if fresh else cookie
        path = scope["path"][len(scope.get("root_path", "")) :] if scope.get("root_path") else scope["path"]
        public = path.startswith(("/static/", "/login"))
        if self.auth is not None and not public and not self.auth.allows(request):
            response = _unauthorised(request, self.auth)
            await response(scope, receive, send)
            return

        async def send_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                header = (
                    f"{CSRF_COOKIE}={scope['state']['csrf_cookie']}; Path={scope.get('root_path') or '/'}; "
                    "HttpOnly; SameSite=Strict"
                )
                if scope.get("scheme") == "https":
                    header += "; Secure"
                MutableHeaders(scope=message).append("set-cookie", header)
            await send(message)

        await self.app(scope, receive, send_cookie)


def _unauthorised(request: Request, auth: Auth) -> Response:
    if (
        auth.token is not None
        and request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
    ):
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/login", status_code=303)
    headers = {"www-authenticate": 'Basic realm="skiplock", charset="UTF-8"'} if auth.user else {}
    return PlainTextResponse("authentication required\n", status_code=401, headers=headers)


async def _error(request: Request, exc: Exception) -> Response:
    """One clear line for the operator: never a traceback, never the DSN's password."""
    status, message = 500, "internal error (see the server log)"
    if isinstance(exc, PermissionError):
        status, message = 403, str(exc)
    elif isinstance(exc, (FilterError, InvalidInput)):
        status, message = 400, str(exc)
    elif isinstance(exc, JobNotFound):
        status, message = 404, str(exc)
    elif isinstance(exc, DatabaseUnavailable):
        status, message = 503, str(exc)
    elif isinstance(exc, DatabaseError):
        status, message = (400 if is_input_fault(exc) else 503), str(exc)
    elif isinstance(exc, SkiplockError):
        status, message = 400, str(exc)
    elif getattr(exc, "status_code", None) in (404, 405):
        status = int(getattr(exc, "status_code", 404))
        message = "no such page" if status == 404 else "method not allowed"
    else:
        log.error("web: %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
    try:
        dsn = resolve_dsn(request.app.state.dsn_for_scrub)
    except SkiplockError:
        dsn = None
    message = scrub(message, dsn)
    template = request.app.state.templates.get_template("error.html")
    context = routes.base_context(request, "")
    context.update(status=status, message=message)
    return HTMLResponse(template.render(context), status_code=status)
