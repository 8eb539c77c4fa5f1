"""Mapping an upstream's error status to the gateway's (design §4), shared by every adapter.

The rule that matters: the client is told its request was bad only when the upstream said so about
the request. Upstream credential failures are the gateway's problem (502), never a 401 that would
make the client think *its* key is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

from proxy.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamOutOfCredit,
    UpstreamTimeout,
    UpstreamUnavailable,
)

# Headers worth passing on to the client with an error (rate-limit hints).
_KEPT_HEADERS = ("retry-after", "retry-after-ms")


def retry_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The retry hints of an upstream answer, for our own answer."""
    return {name: headers[name] for name in _KEPT_HEADERS if name in headers}


def map_status(
    provider: str,
    status: int,
    message: str,
    *,
    headers: Mapping[str, str],
    code: str | None = None,
    param: str | None = None,
) -> GatewayError:
    """The gateway error for upstream ``status`` with the upstream's own ``message``."""
    # The upstream's own status, for the provider's reachability.
    return _mapped(
        provider, status, message, headers=headers, code=code, param=param
    ).upstream_answered(status)


def _mapped(
    provider: str,
    status: int,
    message: str,
    *,
    headers: Mapping[str, str],
    code: str | None,
    param: str | None,
) -> GatewayError:
    text = f"Upstream {provider} error ({status}): {message}"
    kept = retry_headers(headers)
    if status in (400, 409, 422):
        return InvalidRequest(text, param=param, code=code)
    if status == 404:
        return ModelNotFound(text, param=param or "model", code=code or "model_not_found")
    if status == 413:
        return RequestTooLarge(text, param=param)
    if status == 429:
        return RateLimited(text, code=code or "rate_limit_exceeded", headers=kept)
    if status in (401, 403):
        return UpstreamAuthFailed(
            f"Upstream {provider} rejected the gateway's credentials ({status}); "
            "the gateway's administrator must fix its provider key."
        )
    if status == 402:
        return UpstreamOutOfCredit(text, code=code or "insufficient_quota")
    if status == 408 or status == 504:
        return UpstreamTimeout(text, code=code)
    if status == 503:
        return UpstreamUnavailable(text, code=code, headers=kept)
    if 400 <= status < 500:
        return (
            PermissionDenied(text, code=code) if status == 451 else InvalidRequest(text, code=code)
        )
    return UpstreamError(text, code=code)
