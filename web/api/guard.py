"""Deny by default: every ``/api`` request needs a session, except the routes listed public.

The checks, in order: a request body must be JSON, ``Content-Type: application/json`` (415
``unsupported_media_type``: a cross-site HTML form can only send form encodings or text/plain, so
no form reaches a route); the sign-in, the one public mutation, must come from this dashboard when
a browser sends it (an Origin header; 403 ``bad_origin``: another site's page could otherwise
sign the victim's browser in to the attacker's account); a session (Bearer token or the
``llm_proxy_session`` cookie), else 401; a user who must change their password may only see their
status, change it or sign out (403 ``password_change_required``); a mutation carried by the cookie
must come from this dashboard's own origin (403 ``bad_origin``: the cookie is SameSite=Strict
already, this is the second lock); a mutation needs role ``admin`` (403 ``admin_required``),
except signing out and changing one's own password.
"""

from __future__ import annotations

from typing import Final

from quart import Quart, g, request

from actors.session_store import Session, Sessions
from proxy.errors import AuthenticationFailed, PermissionDenied, UnsupportedMediaType

SESSION_COOKIE: Final = "llm_proxy_session"
LOGIN: Final = ("POST", "/api/auth/login")
PUBLIC: Final = frozenset({LOGIN})
# What a user may do with any role, and while a password change is pending.
SELF_SERVICE: Final = frozenset(
    {
        ("GET", "/api/auth/status"),
        ("POST", "/api/auth/logout"),
        ("POST", "/api/auth/change-password"),
    }
)
_READS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def request_token(authorization: str | None, cookie: str | None) -> tuple[str | None, bool]:
    """The session token a request carries (its Authorization header, else the session
    cookie), and whether it came in the cookie."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    return (cookie, True) if cookie else (None, False)


def same_origin(origin: str | None, scheme: str, host: str) -> bool:
    """Whether an ``Origin`` header names this server as the request reached it."""
    if not origin:
        return False
    expected = {f"{scheme}://{host}".lower()}
    if scheme in ("ws", "wss"):
        expected = {f"{'https' if scheme == 'wss' else 'http'}://{host}".lower()}
    return origin.rstrip("/").lower() in expected


async def authenticate(sessions: Sessions, token: str | None) -> Session:
    """The live session of ``token``; 401 otherwise."""
    found = await sessions.lookup(token) if token else None
    if found is None:
        raise AuthenticationFailed(
            "Sign in first: this needs a session (Authorization: Bearer <token>, or the "
            "session cookie set by POST /api/auth/login).",
            code="not_authenticated",
        )
    return found


def _has_body() -> bool:
    return bool(request.content_length) or "transfer-encoding" in request.headers


def _require_json_body() -> None:
    """A 415 unless the request has no body or declares it as UTF-8 JSON."""
    if not _has_body():
        return
    declared = request.headers.get("content-type", "")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if request.mimetype != "application/json" or charset not in ("utf-8", "utf8"):
        shown = repr(declared[:60]) if declared else "none"
        raise UnsupportedMediaType(
            "The request body must be JSON sent with 'Content-Type: application/json' "
            f"(UTF-8); this one's type is {shown}.",
            code="unsupported_media_type",
        )


def _check_login_origin() -> None:
    """A browser's sign-in must come from this dashboard. Browsers send Origin with every
    cross-site POST (``null`` from opaque origins), so a sign-in without one is a script's or
    the CLI's, and welcome; the session cookie is not a credential here, so it changes nothing."""
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(origin, request.scheme, request.host):
        raise PermissionDenied(
            "Refused: a sign-in from a browser must come from this dashboard (the Origin "
            "header does not match).",
            code="bad_origin",
        )


async def _guard(sessions: Sessions) -> None:
    path = request.path.rstrip("/") or "/"
    if path != "/api" and not path.startswith("/api/"):
        return
    _require_json_body()
    route = (request.method, path)
    if route == LOGIN:
        _check_login_origin()
    if route in PUBLIC:
        return
    token, via_cookie = request_token(
        request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE)
    )
    current = await authenticate(sessions, token)
    g.session = current
    if current.must_change_password and route not in SELF_SERVICE:
        raise PermissionDenied(
            "Change your password first (POST /api/auth/change-password).",
            code="password_change_required",
        )
    if request.method in _READS:
        return
    if via_cookie and not same_origin(request.headers.get("origin"), request.scheme, request.host):
        raise PermissionDenied(
            "Refused: a change made with the session cookie must come from this dashboard "
            "(the Origin header does not match).",
            code="bad_origin",
        )
    if route not in SELF_SERVICE and not current.is_admin:
        raise PermissionDenied(
            "Your role (viewer) may read but not change anything.", code="admin_required"
        )


def install_guard(app: Quart, sessions: Sessions) -> None:
    """Run the guard before every request, so even an unknown ``/api`` path is denied first."""

    async def guard() -> None:
        await _guard(sessions)

    app.before_request(guard)
