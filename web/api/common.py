"""What every ``/api`` route shares: JSON errors, typed bodies, the signed-in session, audit."""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import Any, TypeVar, cast

import msgspec
from quart import Response, current_app, g, request

from actors.session_store import Session
from storage.audit import record_audit
from web.gateway import Gateway

T = TypeVar("T")

MAX_API_BODY = 1_000_000


class ApiError(Exception):
    """An error answered as ``{"error": {"message", "type", "code"}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or _TYPES.get(status, "api_error")
        self.code = code
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The JSON answer."""
        body = {"error": {"message": self.message, "type": self.error_type, "code": self.code}}
        return json_response(body, self.status, headers=self.headers)


_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
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
    """The request's JSON body as ``model``; a 400 naming the problem otherwise."""
    data = await request.get_data(cache=False)
    if len(data) > MAX_API_BODY:
        raise ApiError(413, f"The request body is larger than {MAX_API_BODY} bytes.")
    if not data:
        raise ApiError(400, "The request needs a JSON body.")
    try:
        return msgspec.json.decode(data, type=model)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"Invalid request body: {exc}.") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}.") from None


def gateway() -> Gateway:
    """The running gateway (set on the app by ``register_api``)."""
    return cast(Gateway, current_app.config["LLM_PROXY_GATEWAY"])


def session() -> Session:
    """The session of the signed-in user (the guard has checked there is one)."""
    return cast(Session, g.session)


def now_ms() -> int:
    """Wall-clock Unix milliseconds, the storage layer's timestamps."""
    return int(time.time() * 1000)


async def audit(action: str, target: str = "", detail: Mapping[str, Any] | None = None) -> None:
    """Record a dashboard mutation in ``audit_log`` (through the writer, after it happened)."""
    await gateway().writer.execute(
        partial(
            record_audit,
            username=session().username,
            action=action,
            target=target,
            detail=dict(detail or {}),
            now_ms=now_ms(),
        )
    )
