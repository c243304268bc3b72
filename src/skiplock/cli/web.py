"""`skiplock web`: serve the dashboard."""

from __future__ import annotations

import ipaddress
import logging
from typing import Annotated

import typer

from skiplock.cli._common import DsnOption, dsn_of, fail, handle_errors
from skiplock.settings import redact

__all__ = ["web"]

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str] | None:
    """The Host headers a loopback dashboard answers (DNS rebinding: a page on another site
    that points its own name at 127.0.0.1 sends its own name); None for a public bind."""
    if not is_loopback(host):
        return None
    return ["127.0.0.1", "localhost", "::1", "[::1]", host]


@handle_errors
def web(
    dsn: DsnOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = 8325,
    write: Annotated[
        bool, typer.Option("--write", help="Allow retry, cancel, pause, resume and limit changes.")
    ] = False,
    refresh: Annotated[float, typer.Option(min=0.5, help="Seconds between live refreshes.")] = 2.0,
) -> None:
    """Serve the web dashboard (read-only unless --write).

    Access control comes from the environment, never from the command line: SKIPLOCK_WEB_TOKEN
    (an access token: a login form, or Authorization: Bearer), or SKIPLOCK_WEB_USER with
    SKIPLOCK_WEB_PASSWORD (HTTP basic auth). Without either the dashboard only listens on a
    loopback address.
    """
    try:
        import uvicorn

        from skiplock.web import Auth, app
    except ImportError as exc:
        raise fail(
            f"the dashboard needs the web extra: pip install 'skiplock[web]' ({exc.name} is missing)"
        ) from None
    target = dsn_of(dsn)
    try:
        auth = Auth.from_env()
    except ValueError as exc:
        raise fail(str(exc)) from None
    if auth is None and not is_loopback(host):
        raise fail(
            f"refusing to serve {host} without authentication: set SKIPLOCK_WEB_TOKEN, or "
            "SKIPLOCK_WEB_USER and SKIPLOCK_WEB_PASSWORD (or listen on 127.0.0.1)"
        )
    application = app(target, write=write, auth=auth, allowed_hosts=allowed_hosts(host), refresh_s=refresh)
    logging.getLogger("skiplock.web").info("dashboard for %s", redact(target))
    mode = "read-write" if write else "read-only"
    where = f"http://{host}:{port}/" if port else f"{host} (the port uvicorn reports below)"
    typer.echo(f"skiplock web ({mode}) on {where} for {redact(target)}", err=True)
    # uvicorn's access log shows paths and queries (job filters), never headers or the DSN.
    uvicorn.run(application, host=host, port=port, log_level="info", server_header=False)
