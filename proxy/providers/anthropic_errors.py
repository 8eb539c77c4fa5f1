"""Claude's errors (``{"type": "error", "error": {"type", "message"}}``) as gateway errors.

The status decides, as for every upstream (:mod:`proxy.providers.upstream_errors`), with one
addition: 529 ``overloaded_error`` is Anthropic's own "busy everywhere", a 503 here with its
``retry-after`` (so clients back off and the breaker counts it). An ``error`` event inside a
stream has a type and no status: the type's status (reference §4) stands in.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from proxy.errors import GatewayError, UpstreamUnavailable
from proxy.providers.base import UNREADABLE
from proxy.providers.upstream_errors import map_status, retry_headers

OVERLOADED = 529
#: Anthropic's error types and the status each comes with.
STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": OVERLOADED,
}


class WireError(msgspec.Struct):
    """The ``error`` of an error body or event."""

    type: str = "api_error"
    message: str = ""


class _ErrorBody(msgspec.Struct):
    error: WireError


_decode_error = msgspec.json.Decoder(_ErrorBody).decode


def map_error(provider: str, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
    """The gateway error for an answered error (any body, Anthropic's shape or not)."""
    try:
        error: WireError | None = _decode_error(body).error
    except UNREADABLE:
        error = None
    if error is None:
        text = body[:500].decode(errors="replace").strip() or f"HTTP {status}"
        return _mapped(provider, status, text, headers, None)
    return _mapped(provider, status, error.message or error.type, headers, error.type)


def event_error(provider: str, error: WireError) -> GatewayError:
    """The gateway error for an ``error`` event in a stream."""
    status = STATUS_OF_TYPE.get(error.type, 500)
    return _mapped(provider, status, error.message or error.type, {}, error.type)


def _mapped(
    provider: str, status: int, message: str, headers: Mapping[str, str], kind: str | None
) -> GatewayError:
    if status == OVERLOADED or kind == "overloaded_error":
        return UpstreamUnavailable(
            f"Upstream {provider} is overloaded ({status} overloaded_error): {message}",
            code="upstream_overloaded",
            headers=retry_headers(headers),
        )
    return map_status(provider, status, message, headers=headers)
