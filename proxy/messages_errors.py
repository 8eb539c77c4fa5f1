"""Gateway errors in Anthropic's shape, for ``/v1/messages`` (anthropic-messages.md §4).

``{"type": "error", "error": {"type", "message"}, "request_id"?}`` with the status whose SDK
class fits: 400 ``invalid_request_error`` (and the other 4xx the table does not name), 401
``authentication_error``, 403 ``permission_error``, 404 ``not_found_error``, 409
``conflict_error``, 413 ``request_too_large``, 429 ``rate_limit_error``, 502 ``api_error`` (the
upstream failed: still a 5xx the SDK retries, unless ``x-should-retry: false`` says a retry
cannot help, as for the upstream refusing the gateway's own key), 504 ``timeout_error``, 500
``api_error``.

A 503 of the gateway splits by whether waiting helps. A breaker open, an upstream overloaded,
the gateway restarting: 529 ``overloaded_error``, what Claude answers when it is overloaded, so
the SDK raises its ``OverloadedError`` and Claude Code says "overloaded", backs off and retries
(or switches to its fallback model) as it does against Anthropic, honouring ``retry-after``. A
provider switched off or out of credit: 503 ``api_error`` with ``x-should-retry: false``, since
only an administrator helps and a client that retried 529s for minutes would hide that.

Every error keeps its own headers (``retry-after``, ``x-should-retry``, ``connection``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.errors import (
    AuthenticationFailed,
    Conflict,
    GatewayError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

_encode = msgspec.json.Encoder().encode

#: Gateway error classes and Anthropic's (status, type) for them; the first that matches wins.
_BY_CLASS: tuple[tuple[type[GatewayError], int, str], ...] = (
    (AuthenticationFailed, 401, "authentication_error"),
    (PermissionDenied, 403, "permission_error"),
    (NotFound, 404, "not_found_error"),
    (Conflict, 409, "conflict_error"),
    (RequestTooLarge, 413, "request_too_large"),
    (RateLimited, 429, "rate_limit_error"),
    (UpstreamTimeout, 504, "timeout_error"),
    (UpstreamError, 502, "api_error"),
)

#: The status of an overloaded upstream at Anthropic (no HTTP name; the SDKs know it).
OVERLOADED = 529


def status_and_type(error: GatewayError) -> tuple[int, str]:
    """The HTTP status and Anthropic ``error.type`` for ``error``."""
    if isinstance(error, UpstreamUnavailable):
        if error.retryable:
            return OVERLOADED, "overloaded_error"
        return error.status, "api_error"
    for cls, status, kind in _BY_CLASS:
        if isinstance(error, cls):
            return status, kind
    if error.status >= 500:
        return error.status, "api_error"
    return error.status, "invalid_request_error"


def error_body(error: GatewayError, request_id: str | None = None) -> dict[str, Any]:
    """The error object Anthropic answers with, and sends as an ``error`` event mid-stream."""
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": status_and_type(error)[1], "message": error.message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


def anthropic_error(
    error: GatewayError, request_id: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """The status, extra headers and JSON body of ``error`` answered on ``/v1/messages``."""
    status, _ = status_and_type(error)
    return status, dict(error.headers), _encode(error_body(error, request_id))


def error_event(error: GatewayError, request_id: str | None = None) -> bytes:
    """The ``event: error`` that ends a stream failing after it started (no message_stop)."""
    return b"event: error\ndata: " + _encode(error_body(error, request_id)) + b"\n\n"
