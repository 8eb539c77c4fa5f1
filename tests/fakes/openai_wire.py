"""What every fake OpenAI endpoint shares: error replies, raw replies, headers, ids, JSON.

Chat Completions (`openai_upstream.py`) and the Responses API (`openai_responses.py`) are served
by one fake, as OpenAI serves both; their common wire pieces live here so neither imports the other
in a cycle.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .asgi_server import ResponseWriter

__all__ = [
    "BAD_JSON_MESSAGE",
    "RATE_LIMIT_HEADERS",
    "ErrorReply",
    "Raw",
    "bad_key",
    "common_headers",
    "encode",
    "insufficient_quota",
    "json_headers",
    "model_not_found",
    "overloaded",
    "random_id",
    "rate_limited",
    "send_error",
    "server_error",
    "stream_headers",
]

RATE_LIMIT_HEADERS: Mapping[str, str] = {
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "30000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "29999990",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "0s",
}
_DEFAULT_ERROR_TYPES = {429: "requests", 500: "server_error", 503: "service_unavailable_error"}
_DEFAULT_ERROR_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    403: "Country, region, or territory not supported.",
    404: "The requested resource does not exist.",
    429: "Rate limit reached. Please try again later.",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The server is overloaded or not ready yet.",
}
_ID_ALPHABET = string.ascii_letters + string.digits
BAD_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON.)"
)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """Answer with an OpenAI error body (or `raw_body` verbatim); type/message default by status."""

    status: int
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    raw_body: bytes | None = None
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Raw:
    """Answer with exactly these bytes, piece by piece (an OpenAI-compatible upstream's quirks)."""

    parts: tuple[bytes, ...]
    status: int = 200
    content_type: str = "text/event-stream"
    interval_s: float = 0.0


def rate_limited(retry_after: str = "3", *, model: str = "gpt-4o") -> ErrorReply:
    """A 429 requests-per-minute rate limit with retry-after and exhausted x-ratelimit headers."""
    return ErrorReply(
        429,
        message=(
            f"Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
            f"Limit 60, Used 60, Requested 1. Please try again in {retry_after}s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more."
        ),
        type="requests",
        code="rate_limit_exceeded",
        headers={
            "retry-after": retry_after,
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-requests": f"{retry_after}s",
            "x-ratelimit-reset-tokens": "6m0s",
        },
    )


def insufficient_quota() -> ErrorReply:
    """A 429 out-of-credits error (not retryable)."""
    return ErrorReply(
        429,
        message=(
            "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors."
        ),
        type="insufficient_quota",
        code="insufficient_quota",
    )


def server_error() -> ErrorReply:
    """A 500 server_error."""
    return ErrorReply(
        500,
        message=(
            "The server had an error while processing your request. Sorry about that! You can "
            "retry your request, or contact us through our help center at help.openai.com if the "
            "error persists."
        ),
        type="server_error",
    )


def overloaded(retry_after: str | None = None) -> ErrorReply:
    """A 503 server_is_overloaded, optionally with a retry-after header."""
    return ErrorReply(
        503,
        message="The server is overloaded or not ready yet.",
        type="service_unavailable_error",
        code="server_is_overloaded",
        headers={} if retry_after is None else {"retry-after": retry_after},
    )


def bad_key(key: str = "sk-wrong-key") -> ErrorReply:
    """A 401 invalid_api_key, worded like OpenAI."""
    return ErrorReply(
        401,
        message=_incorrect_key_message(key),
        type="invalid_request_error",
        code="invalid_api_key",
    )


async def send_error(reply: ResponseWriter, error: ErrorReply) -> None:
    """Send an OpenAI error response (or the raw body verbatim)."""
    if error.raw_body is not None:
        body = error.raw_body
    else:
        payload = {
            "message": error.message or _DEFAULT_ERROR_MESSAGES.get(error.status, "Error."),
            "type": error.type or _DEFAULT_ERROR_TYPES.get(error.status, "invalid_request_error"),
            "param": error.param,
            "code": error.code,
        }
        body = encode({"error": payload})
    headers = {**common_headers(), "content-type": error.content_type, **error.headers}
    await reply.full(error.status, headers, body)


def model_not_found(model: str) -> ErrorReply:
    """The 404 OpenAI gives for an unknown model."""
    return ErrorReply(
        404,
        message=f"The model `{model}` does not exist or you do not have access to it.",
        type="invalid_request_error",
        code="model_not_found",
    )


def _incorrect_key_message(key: str) -> str:
    """OpenAI's wording for a wrong key, with the key masked the way OpenAI masks it."""
    masked = key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 8 else key
    return (
        f"Incorrect API key provided: {masked}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )


def common_headers(started_at: float | None = None) -> dict[str, str]:
    """Headers on every OpenAI answer: request id, processing time (since the monotonic
    `started_at`), version, rate limits."""
    elapsed = 0 if started_at is None else int((time.monotonic() - started_at) * 1000)
    return {
        "x-request-id": "req_" + secrets.token_hex(16),
        "openai-processing-ms": str(elapsed),
        "openai-version": "2020-10-01",
        "openai-organization": "org-fake",
        **RATE_LIMIT_HEADERS,
    }


def json_headers(started_at: float | None = None) -> dict[str, str]:
    """Headers for a JSON answer."""
    return {**common_headers(started_at), "content-type": "application/json"}


def stream_headers(started_at: float | None = None) -> dict[str, str]:
    """Headers for an SSE answer."""
    return {
        **common_headers(started_at),
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
    }


def encode(obj: Any) -> bytes:
    """Compact JSON."""
    return msgspec.json.encode(obj)


def random_id(length: int) -> str:
    """Random letters and digits, like OpenAI's ids."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))
