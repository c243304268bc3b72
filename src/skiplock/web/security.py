"""Authentication, CSRF protection and the security headers of every response.

- **Auth** (optional): an access token (``Authorization: Bearer``, or a login form that sets an
  HttpOnly cookie derived from the token, never the token itself) or HTTP basic auth. Both are
  compared in constant time. Secrets come from the environment (see ``Auth.from_env``), never
  from a command line, where ``ps`` would show them.
- **CSRF**: signed double-submit. Each browser gets a random ``skiplock_csrf`` cookie
  (SameSite=Strict, HttpOnly); every form carries HMAC(app secret, cookie) and a write is refused
  unless the two match and the request does not come from another site (``Sec-Fetch-Site``,
  ``Origin``).
- **Headers**: a strict Content-Security-Policy (scripts and styles from this server only, no
  inline code, no framing), ``X-Frame-Options: DENY``, ``nosniff``, ``Referrer-Policy: same-origin``, ``no-store``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSP",
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "Auth",
    "SecurityHeaders",
    "csrf_token",
    "is_same_origin",
]

CSRF_COOKIE = "skiplock_csrf"
SESSION_COOKIE = "skiplock_session"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # same-origin: our own form posts carry a real Origin; no other site learns a dashboard URL.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}
ENV_TOKEN = "SKIPLOCK_WEB_TOKEN"
ENV_USER = "SKIPLOCK_WEB_USER"
ENV_PASSWORD = "SKIPLOCK_WEB_PASSWORD"


@dataclass(frozen=True, slots=True)
class Auth:
    """Who may open the dashboard: holders of ``token``, or ``user`` with ``password``."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 16:
            raise ValueError(f"{ENV_TOKEN}: use at least 16 characters")
        if (self.user is None) != (self.password is None):
            raise ValueError(f"set both {ENV_USER} and {ENV_PASSWORD}, or neither")
        if self.password is not None and len(self.password) < 8:
            raise ValueError(f"{ENV_PASSWORD}: use at least 8 characters")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Auth | None:
        """The auth the environment asks for, or None when it sets none. Raises ValueError."""
        env = os.environ if env is None else env
        token = env.get(ENV_TOKEN) or None
        user, password = env.get(ENV_USER) or None, env.get(ENV_PASSWORD) or None
        if token is None and user is None and password is None:
            return None
        return cls(token=token, user=user, password=password)

    @property
    def session_value(self) -> str | None:
        """The login cookie's value: derived from the token, so the cookie never holds it."""
        if self.token is None:
            return None
        return hmac.new(self.token.encode(), b"skiplock-web-session", hashlib.sha256).hexdigest()

    def check_token(self, candidate: str) -> bool:
        return self.token is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def allows(self, request: Request) -> bool:
        """Whether the request carries a valid token, session cookie or basic credentials."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if self.token is not None:
            if scheme.lower() == "bearer" and self.check_token(value.strip()):
                return True
            cookie = request.cookies.get(SESSION_COOKIE, "")
            expected = self.session_value or ""
            if cookie and hmac.compare_digest(cookie.encode(), expected.encode()):
                return True
        if self.user is not None and self.password is not None and scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, sep, password = decoded.partition(":")
            # Both compared, always: the time taken says nothing about which one was wrong.
            ok_user = hmac.compare_digest(user.encode(), self.user.encode())
            ok_password = hmac.compare_digest(password.encode(), self.password.encode())
            return bool(sep) and ok_user and ok_password
        return False


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(secret: bytes, cookie: str) -> str:
    """The form token that goes with a browser's CSRF cookie."""
    return hmac.new(secret, cookie.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: bytes, cookie: str | None, submitted: str | None) -> bool:
    """Whether a submitted form token matches the browser's cookie."""
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(csrf_token(secret, cookie).encode(), submitted.encode())


def is_same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site.

    Browsers send ``Sec-Fetch-Site`` and ``Origin`` on form posts; clients that send neither
    (scripts with a bearer token) are judged by the CSRF token alone.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":  # "null": an opaque origin; Sec-Fetch-Site and the token decide
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "") and parts.scheme in ("http", "https")


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response, static files included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    if name == "cache-control" and name in headers:
                        continue  # static files keep their own caching
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
