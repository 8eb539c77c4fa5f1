"""What every ``/api`` route shares: JSON errors, typed bodies, the signed-in session, audit."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final, TypeVar, cast

import msgspec
from quart import Quart, Response, current_app, g, request

from actors.session_store import Session
from proxy.errors import (
    GatewayError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RequestTimeout,
    RequestTooLarge,
    UnsupportedMediaType,
)
from storage.audit import record_audit
from storage.writer import StorageWriter

T = TypeVar("T")

MAX_API_BODY = 1_000_000
"""The largest body of an ``/api`` request: Quart's ``MAX_CONTENT_LENGTH`` (``web/app.py``) refuses
a larger one (413) as it arrives, before any route reads it."""


def error_response(error: GatewayError) -> Response:
    """``error`` as the dashboard API answers it: ``{"error": {"message", "type", "param",
    "code"}}`` with its status and headers; the ``type`` is the dashboard's name for the status
    (the same as ``/v1``'s but for 500 ``api_error`` and 503 ``service_unavailable``)."""
    body = {
        "error": {
            "message": error.message,
            "type": _TYPES.get(error.status, "api_error"),
            "param": error.param,
            "code": error.code,
        }
    }
    return json_response(body, error.status, headers=error.headers)


_BY_STATUS: Final[Mapping[int, Callable[[str], GatewayError]]] = {
    400: InvalidRequest,
    404: NotFound,
    405: MethodNotAllowed,
    408: RequestTimeout,
    413: RequestTooLarge,
    415: UnsupportedMediaType,
}


def error_for_status(status: int, message: str) -> GatewayError:
    """The gateway error for an HTTP status Quart itself answered (404, 405, 413, ...): another
    client error is a 400, a server error a 500."""
    kind = _BY_STATUS.get(status)
    if kind is not None:
        return kind(message)
    return InvalidRequest(message) if 400 <= status < 500 else InternalError(message)


_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",  # as on /v1, where OpenAI's own 404s are typed so
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}

_encode = msgspec.json.Encoder().encode


def json_response(
    body: object, status: int = 200, *, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` as JSON (msgspec: dataclasses, Structs and datetimes included), never cached."""
    response = Response(_encode(body), status=status, content_type="application/json")
    response.headers["cache-control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


async def read_body(model: type[T]) -> T:
    """The request's JSON body as ``model``; a 400 naming the problem otherwise (a body past
    :data:`MAX_API_BODY` is Quart's 413)."""
    data = await request.get_data(cache=False)
    if not data:
        raise InvalidRequest("The request needs a JSON body.")
    try:
        return msgspec.json.decode(data, type=model)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}.") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None


def provide(app: Quart, deps: object) -> None:
    """Give ``app``'s routes of one area their collaborators (one frozen record per area)."""
    app.config[_deps_key(type(deps))] = deps


def deps_of(kind: type[T]) -> T:
    """The collaborators of the area ``kind`` describes, as :func:`provide` gave them to the
    app serving this request (blueprints are shared by every app; their collaborators are not)."""
    return cast(T, current_app.config[_deps_key(kind)])


def _deps_key(kind: type) -> str:
    return f"LLM_PROXY_{kind.__module__}.{kind.__qualname__}"


def session() -> Session:
    """The session of the signed-in user (the guard has checked there is one)."""
    return cast(Session, g.session)


DAY_MS: Final = 86_400_000
MAX_MS: Final = 2**53  # far past any real time, and exact in a JSON number
MAX_RANGE_MS: Final = 3660 * DAY_MS  # ten years: anything wider is a typo


def query_time(name: str, default: int) -> int:
    """The query parameter ``name`` as Unix ms, given as ms or ISO 8601; a 400 otherwise."""
    text = request.args.get(name)
    if text is None or text == "":
        return default
    # Not "²" (isdigit, yet int() refuses it), nor thousands of digits (int() refuses those).
    if text.isascii() and text.isdigit():
        value = int(text) if len(text) <= len(str(MAX_MS)) else -1
    else:
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            value = -1
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            value = int(moment.timestamp() * 1000)
    if not 0 <= value <= MAX_MS:
        raise InvalidRequest(
            f"'{name}' must be Unix milliseconds or an ISO 8601 time, not {text[:40]!r}."
        )
    return value


def query_range() -> tuple[int, int]:
    """``from`` and ``to`` of the query: the last 24 hours by default, ten years at most."""
    until = query_time("to", now_ms())
    since = query_time("from", until - DAY_MS)
    if since >= until:
        raise InvalidRequest("The range is empty: 'from' must be before 'to'.")
    if until - since > MAX_RANGE_MS:
        raise InvalidRequest("The range may span ten years at most.")
    return since, until


def now_ms() -> int:
    """Wall-clock Unix milliseconds, the storage layer's timestamps."""
    return int(time.time() * 1000)


Announce = Callable[[str, str], None]
"""Tells the other processes of the fleet that a kind of state changed: ``(kind, name)``."""

# What each audited action changed, as the change bus names it (actors/fleet_bus.py); the
# other actions (a provider test, a backup) change nothing another process holds in memory,
# and the settings table is read from the database on every request.
CHANGED_BY: Final[Mapping[str, str]] = {
    "client.create": "clients",
    "client.update": "clients",
    "client.delete": "clients",
    "client.token.create": "clients",
    "client.token.revoke": "clients",
    "user.create": "users",
    "user.update": "users",
    "user.delete": "users",
    "user.change_password": "users",
    "provider.update": "providers",
    "model.update": "models",
    "budget.update": "budgets",
}


class AuditLog:
    """Where dashboard mutations are recorded: ``audit_log``, through the writer; each is also
    announced to the fleet's other processes when there are any (``announce``)."""

    def __init__(self, writer: StorageWriter, *, announce: Announce | None = None) -> None:
        self._writer = writer
        self._announce = announce

    async def record(
        self, action: str, target: str = "", detail: Mapping[str, Any] | None = None
    ) -> None:
        """Record a mutation by the signed-in user (after it happened and was applied here)."""
        kind = CHANGED_BY.get(action)
        if kind is not None and self._announce is not None:
            # Before the audit write: the change is stored already, and a failed audit write
            # must not keep it from the other processes.
            self._announce(kind, target)
        await self._writer.execute(
            partial(
                record_audit,
                username=session().username,
                action=action,
                target=target,
                detail=dict(detail or {}),
                now_ms=now_ms(),
            )
        )
