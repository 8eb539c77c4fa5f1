"""What the fake Anthropic sends on the wire: error bodies, headers, ids, SSE frames, raw replies.

Shapes follow `/work/shared/reference/anthropic-messages.md` (§1 headers, §4 errors, §5 SSE) and
the `anthropic` SDK's types.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .asgi_server import ResponseWriter

__all__ = [
    "ORGANIZATION_ID",
    "RATE_LIMIT_HEADERS",
    "ErrorReply",
    "Raw",
    "api_error",
    "bad_request",
    "common_headers",
    "encode",
    "error_body",
    "event_stream",
    "frame_event",
    "invalid_key",
    "json_answer",
    "json_headers",
    "new_id",
    "not_found",
    "overloaded",
    "parse_event_stream",
    "permission_denied",
    "rate_limited",
    "request_id",
    "send_error",
    "stream_headers",
]

ORGANIZATION_ID = "4f5a1c3e-8b2d-4e6f-9a0b-1c2d3e4f5a6b"
RATE_LIMIT_HEADERS: Mapping[str, str] = {
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3999",
    "anthropic-ratelimit-requests-reset": "2026-10-21T00:00:01Z",
    "anthropic-ratelimit-tokens-limit": "2000000",
    "anthropic-ratelimit-tokens-remaining": "1999000",
    "anthropic-ratelimit-tokens-reset": "2026-10-21T00:00:01Z",
    "anthropic-ratelimit-input-tokens-limit": "1600000",
    "anthropic-ratelimit-input-tokens-remaining": "1599000",
    "anthropic-ratelimit-input-tokens-reset": "2026-10-21T00:00:01Z",
    "anthropic-ratelimit-output-tokens-limit": "400000",
    "anthropic-ratelimit-output-tokens-remaining": "400000",
    "anthropic-ratelimit-output-tokens-reset": "2026-10-21T00:00:01Z",
}
_BASE62 = string.ascii_letters + string.digits
_DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_DEFAULT_MESSAGES = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "invalid x-api-key",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "rate_limit_error": (
        "This request would exceed the rate limit for your organization of 4,000 requests per "
        "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."
    ),
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
}


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """Answer with Anthropic's error body (or `raw_body` verbatim); type and message default by
    status."""

    status: int
    message: str | None = None
    type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    raw_body: bytes | None = None
    content_type: str = "application/json"

    @property
    def error_type(self) -> str:
        """The `error.type` this reply carries."""
        return self.type or _DEFAULT_TYPES.get(self.status, "api_error")

    @property
    def error_message(self) -> str:
        """The `error.message` this reply carries."""
        return self.message or _DEFAULT_MESSAGES.get(self.error_type, "Error")


@dataclass(frozen=True, slots=True)
class Raw:
    """Answer with exactly these bytes, piece by piece, after the usual response headers."""

    parts: tuple[bytes, ...]
    status: int = 200
    content_type: str = "text/event-stream; charset=utf-8"
    interval_s: float = 0.0


def bad_request(message: str) -> ErrorReply:
    """A 400 invalid_request_error with this message (a field path first, like the API's)."""
    return ErrorReply(400, message, "invalid_request_error")


def invalid_key() -> ErrorReply:
    """The 401 for a wrong API key."""
    return ErrorReply(401, "invalid x-api-key", "authentication_error")


def permission_denied() -> ErrorReply:
    """A 403 permission_error."""
    return ErrorReply(403, type="permission_error")


def not_found(model: str) -> ErrorReply:
    """The 404 for an unknown model: `model: <name>`."""
    return ErrorReply(404, f"model: {model}", "not_found_error")


def rate_limited(retry_after: str = "7") -> ErrorReply:
    """A 429 rate_limit_error with `retry-after` and exhausted rate-limit headers."""
    return ErrorReply(
        429,
        type="rate_limit_error",
        headers={
            "retry-after": retry_after,
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2026-10-21T00:00:07Z",
        },
    )


def overloaded(retry_after: str | None = None) -> ErrorReply:
    """A 529 overloaded_error, optionally with `retry-after`."""
    headers = {} if retry_after is None else {"retry-after": retry_after}
    return ErrorReply(529, "Overloaded", "overloaded_error", headers=headers)


def api_error() -> ErrorReply:
    """A 500 api_error."""
    return ErrorReply(500, "Internal server error", "api_error")


def request_id() -> str:
    """A request id like Anthropic's: `req_011C` and 20 base62 characters."""
    return "req_011C" + _random(20)


def new_id(prefix: str) -> str:
    """An object id like Anthropic's: `msg_01…`, `toolu_01…`, `srvtoolu_01…` (22 base62)."""
    return f"{prefix}_01" + _random(22)


def _random(length: int) -> str:
    """Random base62 characters."""
    return "".join(secrets.choice(_BASE62) for _ in range(length))


def common_headers(req_id: str) -> dict[str, str]:
    """Headers on every answer: request id, organization, rate limits."""
    return {
        "request-id": req_id,
        "anthropic-organization-id": ORGANIZATION_ID,
        **RATE_LIMIT_HEADERS,
    }


def json_headers(req_id: str) -> dict[str, str]:
    """Headers for a JSON answer."""
    return {**common_headers(req_id), "content-type": "application/json"}


def stream_headers(req_id: str) -> dict[str, str]:
    """Headers for an SSE answer."""
    return {
        **common_headers(req_id),
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
    }


def error_body(error: ErrorReply, req_id: str) -> bytes:
    """The JSON body of an error answer."""
    if error.raw_body is not None:
        return error.raw_body
    inner = {"type": error.error_type, "message": error.error_message}
    return encode({"type": "error", "error": inner, "request_id": req_id})


async def send_error(reply: ResponseWriter, error: ErrorReply, req_id: str | None = None) -> None:
    """Send an Anthropic error response with its `request-id` header."""
    req_id = req_id or request_id()
    headers = {**common_headers(req_id), "content-type": error.content_type, **error.headers}
    await reply.full(error.status, headers, error_body(error, req_id))


def encode(obj: Any) -> bytes:
    """Compact JSON, as the API sends it."""
    return msgspec.json.encode(obj)


def frame_event(event: Mapping[str, Any]) -> bytes:
    """One named SSE event: `event: <type>` and `data: <json>`; a ping's data is the API's
    spaced `{"type": "ping"}`."""
    kind = str(event["type"])
    data = b'{"type": "ping"}' if kind == "ping" and len(event) == 1 else encode(event)
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def event_stream(*events: Mapping[str, Any] | bytes, interval_s: float = 0.0) -> Raw:
    """Answer with exactly these SSE events: a dict framed with its `event:` line (named after its
    `type`), bytes sent as they are."""
    parts = tuple(e if isinstance(e, bytes) else frame_event(e) for e in events)
    return Raw(parts, interval_s=interval_s)


def json_answer(body: Any, *, status: int = 200) -> Raw:
    """Answer with exactly this JSON (encoded compactly, or `bytes` as given) in one piece."""
    data = body if isinstance(body, bytes) else encode(body)
    return Raw((data,), status=status, content_type="application/json")


def parse_event_stream(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every event of an Anthropic SSE body, asserting each is framed as
    the API frames it: an `event:` line naming the data's `type`, then one `data:` line."""
    events = []
    for block in body.replace(b"\r\n", b"\n").decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert len(lines) == 2, block
        assert lines[0].startswith("event: "), block
        assert lines[1].startswith("data: "), block
        name = lines[0].removeprefix("event: ")
        data = msgspec.json.decode(lines[1].removeprefix("data: "))
        assert isinstance(data, dict), block
        assert data.get("type") == name, block
        events.append((name, data))
    return events
