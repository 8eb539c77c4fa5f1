"""Gateway errors and their one wire shape: ``{"error": {message, type, param, code}}``.

Errors are exceptions inside the gateway and become values exactly once, at the HTTP edge, through
:meth:`GatewayError.to_body`. Each subclass fixes the status and ``type`` of design §4, and
whether a retry of the same request can help (:attr:`GatewayError.retryable`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

import msgspec


class ErrorDetail(msgspec.Struct, frozen=True):
    """The inner object of an OpenAI error body."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    """An OpenAI error body, also sent as one SSE event when a stream fails after it started."""

    error: ErrorDetail


_encode = msgspec.json.Encoder().encode


class GatewayError(Exception):
    """Base of every error the gateway answers on purpose; never raised itself."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None
    #: Whether the same request may succeed if sent again (a rate limit, an outage). When not,
    #: the answer says ``x-should-retry: false``: the OpenAI and Anthropic SDKs obey it over
    #: their own rule, which retries 408, 409, 429 and every 5xx twice, for nothing here.
    retryable: ClassVar[bool] = True
    #: The HTTP status the upstream answered with, when this error is its answer mapped
    #: (:func:`proxy.providers.upstream_errors.map_status`); None for everything else.
    upstream_status: int | None = None
    #: Why the upstream could not be reached at all ("connection refused"), when known.
    unreached_because: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = dict(headers or {})
        if not self.retryable:
            self.headers["x-should-retry"] = "false"

    def upstream_answered(self, status: int) -> Self:
        """Note the HTTP status the upstream answered with (this error is its answer mapped)."""
        self.upstream_status = status
        return self

    def upstream_unreached(self, because: str) -> Self:
        """Note why the upstream could not be reached at all ("connection refused")."""
        self.unreached_because = because
        return self

    def detail(self) -> ErrorDetail:
        """The error as the inner object of the wire shape."""
        return ErrorDetail(self.message, self.error_type, self.param, self.code)

    def to_body(self) -> bytes:
        """The JSON body sent to the client."""
        return _encode(ErrorBody(self.detail()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r}, code={self.code!r})"


class InvalidRequest(GatewayError):
    """400: bad JSON, wrong field types, unsupported parameter."""

    status = 400
    error_type = "invalid_request_error"
    retryable = False


class AuthenticationFailed(GatewayError):
    """401: missing, unknown or revoked API key, inactive client."""

    status = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"
    retryable = False


class PermissionDenied(GatewayError):
    """403: the caller is known but not allowed."""

    status = 403
    error_type = "permission_error"
    retryable = False


class MethodNotAllowed(InvalidRequest):
    """405: a known path with the wrong method."""

    status = 405


class UnsupportedMediaType(InvalidRequest):
    """415: a body that is not of the one content type the route takes."""

    status = 415


class Conflict(GatewayError):
    """409: the request contradicts the resource's state (a name taken, a provider not running)."""

    status = 409
    error_type = "conflict_error"
    retryable = False


class NotFound(GatewayError):
    """404: unknown model or resource, typed as OpenAI types its own 404s."""

    status = 404
    error_type = "invalid_request_error"
    retryable = False


class ModelNotFound(NotFound):
    """404 for a model name no route matches."""

    default_code = "model_not_found"


class RequestTimeout(GatewayError):
    """408: the client did not send its request body in time (a retry may get through)."""

    status = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"

    # The connection is in an unknown state mid-body: end it with the answer.
    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"connection": "close"})


class RequestTooLarge(GatewayError):
    """413: the body is over ``server.max_body_bytes``."""

    status = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"
    retryable = False


class RateLimited(GatewayError):
    """429: a rate limit was hit, here or upstream; carries ``retry-after``."""

    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class BudgetExceeded(RateLimited):
    """429: a spend budget (a client's, the gateway's, a provider's) is used up until its period
    resets; ``retry-after`` is the wait to the reset. Not worth an SDK's quick retries."""

    error_type = "insufficient_quota"
    default_code = "budget_exceeded"
    retryable = False


class UpstreamError(GatewayError):
    """502: the upstream failed or answered something that is not its protocol."""

    status = 502
    error_type = "upstream_error"


class UpstreamAuthFailed(UpstreamError):
    """502: the upstream refused the gateway's own credentials; its administrator must act."""

    default_code = "upstream_auth_failed"
    retryable = False


class UpstreamUnavailable(GatewayError):
    """503: breaker open, upstream overloaded, gateway shutting down."""

    status = 503
    error_type = "upstream_unavailable"


class ProviderDisabled(UpstreamUnavailable):
    """503: the provider serving the model is switched off here; only an administrator helps."""

    default_code = "provider_disabled"
    retryable = False


class UpstreamOutOfCredit(UpstreamUnavailable):
    """503: the upstream account has no credit left (HTTP 402); only paying helps."""

    default_code = "insufficient_quota"
    retryable = False


class UpstreamTimeout(GatewayError):
    """504: the upstream deadline passed."""

    status = 504
    error_type = "upstream_timeout"


class InternalError(GatewayError):
    """500: a bug. Answered with the request id so the log line can be found."""

    status = 500
    error_type = "server_error"


def shutting_down() -> UpstreamUnavailable:
    """503 for a request that arrives (on a kept-alive connection) after shutdown began."""
    return UpstreamUnavailable(
        "The gateway is shutting down; retry in a moment.",
        code="shutting_down",
        # Close the kept-alive connection so the client's retry goes to a live listener.
        headers={"retry-after": "1", "connection": "close"},
    )


class ServiceUnavailable(GatewayError):
    """503: something the gateway needs to decide a call (the fleet's Redis) is unreachable."""

    status = 503
    error_type = "service_unavailable"


def rate_limit_store_unavailable() -> ServiceUnavailable:
    """503 for a call that cannot be decided: Redis is down and ``on_redis_down`` is "refuse"."""
    return ServiceUnavailable(
        "Service unavailable: the rate limit store (Redis) is unreachable; retry in a moment.",
        code="rate_limit_store_unavailable",
        # The link probes Redis every second: a retry after one may find it back.
        headers={"retry-after": "1"},
    )


class StartupError(Exception):
    """A known reason the gateway cannot start (port taken, database unusable); the message
    names the thing and the reason in one line, and ``serve`` prints it without a traceback."""
