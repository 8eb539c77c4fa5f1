"""Gateway errors in Anthropic's shape (anthropic-messages.md §4), raised by the official SDK as
the class it raises for Claude's own, and the count_tokens estimate."""

from __future__ import annotations

import json

import anthropic
import pytest

from proxy.errors import (
    AuthenticationFailed,
    Conflict,
    GatewayError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    PermissionDenied,
    ProviderDisabled,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamOutOfCredit,
    UpstreamTimeout,
    UpstreamUnavailable,
    shutting_down,
)
from proxy.messages_errors import anthropic_error, error_event
from proxy.messages_tokens import estimate_input_tokens
from tests.messages_sdk import client

CASES = [
    (
        InvalidRequest("messages: Field required", param="messages"),
        400,
        "invalid_request_error",
        anthropic.BadRequestError,
    ),
    (
        AuthenticationFailed("Invalid API key."),
        401,
        "authentication_error",
        anthropic.AuthenticationError,
    ),
    (PermissionDenied("Not allowed."), 403, "permission_error", anthropic.PermissionDeniedError),
    (ModelNotFound("model: claude-x"), 404, "not_found_error", anthropic.NotFoundError),
    (Conflict("Taken."), 409, "conflict_error", anthropic.ConflictError),
    (RequestTooLarge("Too large."), 413, "request_too_large", anthropic.ContentTooLargeError),
    (
        RateLimited("Slow down.", headers={"retry-after": "7"}),
        429,
        "rate_limit_error",
        anthropic.RateLimitError,
    ),
    (UpstreamError("Upstream answered 500."), 502, "api_error", anthropic.InternalServerError),
    (
        UpstreamAuthFailed("Upstream refused our key."),
        502,
        "api_error",
        anthropic.InternalServerError,
    ),
    (UpstreamTimeout("Upstream timed out."), 504, "timeout_error", anthropic.InternalServerError),
    (
        UpstreamUnavailable("Breaker open.", headers={"retry-after": "30"}),
        529,
        "overloaded_error",
        anthropic.OverloadedError,
    ),
    (shutting_down(), 529, "overloaded_error", anthropic.OverloadedError),
    (ProviderDisabled("Provider off."), 503, "api_error", anthropic.InternalServerError),
    (UpstreamOutOfCredit("No credit."), 503, "api_error", anthropic.InternalServerError),
    (InternalError("Bug."), 500, "api_error", anthropic.InternalServerError),
    (MethodNotAllowed("Use POST."), 405, "invalid_request_error", anthropic.APIStatusError),
    (RequestTimeout("Body too slow."), 408, "invalid_request_error", anthropic.APIStatusError),
]


@pytest.mark.parametrize(("error", "status", "kind", "sdk_error"), CASES)
def test_each_error_has_anthropics_status_type_and_sdk_class(
    error: GatewayError, status: int, kind: str, sdk_error: type[Exception]
) -> None:
    got_status, headers, body = anthropic_error(error, "req_42")
    assert got_status == status
    assert json.loads(body) == {
        "type": "error",
        "error": {"type": kind, "message": error.message},
        "request_id": "req_42",
    }
    assert headers == error.headers
    sdk = client(body, "application/json", status, headers)
    with pytest.raises(sdk_error) as caught:
        sdk.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}])
    assert caught.value.type == kind  # type: ignore[attr-defined]


def test_retry_after_and_x_should_retry_are_kept() -> None:
    _, headers, _ = anthropic_error(RateLimited("Slow.", headers={"retry-after": "7"}))
    assert headers["retry-after"] == "7"
    _, headers, _ = anthropic_error(ProviderDisabled("Off."))
    assert headers["x-should-retry"] == "false"
    _, headers, _ = anthropic_error(UpstreamUnavailable("Busy.", headers={"retry-after": "3"}))
    assert headers == {"retry-after": "3"}


def test_without_a_request_id_the_body_has_none() -> None:
    _, _, body = anthropic_error(InvalidRequest("x: bad"))
    assert json.loads(body) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "x: bad"},
    }


def test_the_mid_stream_error_event_is_named_and_carries_the_body() -> None:
    event = error_event(UpstreamUnavailable("Overloaded"))
    assert event == (
        b'event: error\ndata: {"type":"error","error":'
        b'{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )


# -- count_tokens --------------------------------------------------------------------------


def count(**fields: object) -> int:
    return estimate_input_tokens(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}], **fields}
    )


def test_the_estimate_grows_with_system_tools_and_messages() -> None:
    base = count()
    assert base > 0
    with_system = count(system="You are a careful assistant. " * 20)
    tool = {"name": "Read", "description": "Read a file.", "input_schema": {"type": "object"}}
    with_tools = count(tools=[tool] * 10)
    assert with_system > base + 100
    assert with_tools > base + 100


def test_an_image_counts_as_an_image_not_its_bytes() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "A" * 400_000},
    }
    tokens = count(messages=[{"role": "user", "content": [image]}])
    assert 765 <= tokens < 1000


def test_what_the_translation_drops_is_not_counted() -> None:
    plain = count(system=[{"type": "text", "text": "Be brief."}])
    marked = count(
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.3; cch=1;"},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        ],
        cache_control={"type": "ephemeral"},
    )
    assert marked == plain


@pytest.mark.parametrize("field", ["max_tokens", "stream", "metadata", "stop_sequences"])
def test_count_tokens_refuses_the_fields_it_does_not_take(field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        count(**{field: 1})
    assert caught.value.message == f"{field}: Extra inputs are not permitted"
    assert caught.value.param == field


def test_count_tokens_refuses_what_the_translation_refuses() -> None:
    with pytest.raises(InvalidRequest) as caught:
        count(tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert caught.value.param == "tools.0.type"
