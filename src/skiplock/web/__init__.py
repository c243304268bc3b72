"""``skiplock web``: a dashboard of the queues, their jobs and the PostgreSQL under them.

Needs the ``web`` extra (``pip install 'skiplock[web]'``: Starlette, Jinja2, uvicorn).
:func:`app` returns an ASGI application to serve on its own or to mount in your own::

    from starlette.applications import Starlette
    from starlette.routing import Mount
    import skiplock.web

    dashboard = skiplock.web.app(dsn, write=False)
    application = Starlette(routes=[Mount("/skiplock", app=dashboard)])
"""

from __future__ import annotations

from skiplock.web.app import app
from skiplock.web.security import Auth

__all__ = ["Auth", "app"]
