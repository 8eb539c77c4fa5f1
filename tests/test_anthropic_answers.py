"""The Anthropic adapter's answers: messages, event streams, errors and model lists (ref. §3–7)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from proxy.chat import ChatChunk
from proxy.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    RequestTooLarge,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamOutOfCredit,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.providers.anthropic import AnthropicAdapter
from proxy.providers.base import ListedModel

MODEL = "claude-sonnet-4-5"
THINKING = {"type": "thinking", "thinking": "Let me see…", "signature": "EqQBCkYI"}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgB"}


def adapter() -> AnthropicAdapter:
    return AnthropicAdapter("anthropic", "sk-ant-secret")


def message(**fields: Any) -> bytes:
    base: dict[str, Any] = {
        "id": "msg_01XYZ",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 377,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 65,
            "service_tier": "standard",
        },
    }
    return json.dumps({**base, **fields}).encode()


def wire(value: object) -> Any:
    return json.loads(msgspec.json.encode(value))


# -- whole answers -----------------------------------------------------------------------------


def test_text_answer_in_openai_shape() -> None:
    response = wire(adapter().parse_response(message(), MODEL))
    assert response["id"] == "msg_01XYZ"
    assert response["model"] == "claude-sonnet-4-5-20250929"
    assert response["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello!",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert response["usage"]["prompt_tokens"] == 377
    assert response["usage"]["completion_tokens"] == 65
    assert response["usage"]["total_tokens"] == 442


def test_thinking_and_tool_use_answer_carries_the_blocks_on_the_tool_call() -> None:
    claude = adapter()
    body = message(
        content=[
            THINKING,
            REDACTED,
            {"type": "text", "text": "I'll check."},
            {
                "type": "tool_use",
                "id": "toolu_01A",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
            {"type": "tool_use", "id": "toolu_01B", "name": "now", "input": {}},
        ],
        stop_reason="tool_use",
    )
    choice = wire(claude.parse_response(body, MODEL))["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    reply = choice["message"]
    assert reply["content"] == "I'll check."
    assert reply["reasoning_content"] == "Let me see…"
    assert reply["tool_calls"] == [
        {
            "id": "toolu_01A",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            "type": "function",
            "extra_content": {"anthropic": {"thinking_blocks": [THINKING, REDACTED]}},
        },
        {"id": "toolu_01B", "function": {"name": "now", "arguments": "{}"}, "type": "function"},
    ]
    assert claude.thinking.recall("toolu_01A") == [THINKING, REDACTED]
    assert claude.thinking.recall("toolu_01B") is None


def test_answer_with_only_tool_calls_has_null_content() -> None:
    body = message(
        content=[{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}],
        stop_reason="tool_use",
    )
    assert wire(adapter().parse_response(body, MODEL))["choices"][0]["message"]["content"] is None


def test_unknown_blocks_are_skipped() -> None:
    body = message(
        content=[
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
            {"type": "text", "text": "A", "citations": [{"type": "char_location"}]},
            {"type": "new_kind_of_block", "x": 1},
            {"type": "text", "text": "B"},
        ]
    )
    assert wire(adapter().parse_response(body, MODEL))["choices"][0]["message"]["content"] == "AB"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_finish_reasons(stop_reason: str, finish: str) -> None:
    response = adapter().parse_response(message(stop_reason=stop_reason), MODEL)
    assert response.choices[0].finish_reason == finish


def test_usage_counts_cache_writes_and_reads_in_the_prompt() -> None:
    body = message(
        usage={
            "input_tokens": 10,
            "cache_creation_input_tokens": 200,
            "cache_read_input_tokens": 3000,
            "output_tokens": 50,
            "output_tokens_details": {"thinking_tokens": 30},
        }
    )
    usage = wire(adapter().parse_response(body, MODEL))["usage"]
    assert usage == {
        "prompt_tokens": 3210,
        "completion_tokens": 50,
        "total_tokens": 3260,
        "prompt_tokens_details": {"cached_tokens": 3000, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 30,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
        "cache_creation_input_tokens": 200,
        "cache_read_input_tokens": 3000,
    }


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"content": "text"}', b'{"content": [{"text": "no type"}]}']
)
def test_garbage_answers_are_upstream_errors(body: bytes) -> None:
    with pytest.raises(UpstreamError, match="malformed response"):
        adapter().parse_response(body, MODEL)


# -- streams -----------------------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n".encode()
        for e in events
    )


START = {
    "type": "message_start",
    "message": {
        "id": "msg_01S",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 25,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "output_tokens": 1,
        },
    },
}
STREAM = sse(
    START,
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },
    {"type": "ping"},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Let me "},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "see…"},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "EqQBCkYI"},
    },
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": REDACTED},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "I'll "}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "chéck."}},
    {"type": "content_block_stop", "index": 2},
    {
        "type": "content_block_start",
        "index": 3,
        "content_block": {
            "type": "tool_use",
            "id": "toolu_01A",
            "name": "get_weather",
            "input": {},
        },
    },
    {
        "type": "content_block_delta",
        "index": 3,
        "delta": {"type": "input_json_delta", "partial_json": ""},
    },
    {
        "type": "content_block_delta",
        "index": 3,
        "delta": {"type": "input_json_delta", "partial_json": '{"city": "Par'},
    },
    {
        "type": "content_block_delta",
        "index": 3,
        "delta": {"type": "input_json_delta", "partial_json": 'is"}'},
    },
    {"type": "content_block_stop", "index": 3},
    {"type": "a_new_event", "index": 9},
    {
        "type": "message_delta",
        "delta": {"type": "message_delta", "stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 89},
    },
    {"type": "message_stop"},
)


def feed_all(raw: bytes, size: int, claude: AnthropicAdapter | None = None) -> list[ChatChunk]:
    parser = (claude or adapter()).chunk_parser(MODEL)
    chunks: list[ChatChunk] = []
    for start in range(0, len(raw), size):
        chunks.extend(parser.feed(raw[start : start + size]))
    chunks.extend(parser.finish())
    return chunks


def test_stream_chunks_in_openai_shape() -> None:
    claude = adapter()
    chunks = feed_all(STREAM, len(STREAM), claude)
    deltas = [wire(c.choices[0].delta) for c in chunks if c.choices]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Let me "},
        {"reasoning_content": "see…"},
        {"content": "I'll "},
        {"content": "chéck."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                    "extra_content": {"anthropic": {"thinking_blocks": [THINKING, REDACTED]}},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Par'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'is"}'}}]},
        {},
    ]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    # The usage chunk comes last: cumulative output, input with the cache.
    assert chunks[-1].choices == []
    usage = wire(chunks[-1].usage)
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        1125,
        89,
        1214,
    )
    assert usage["prompt_tokens_details"]["cached_tokens"] == 1000
    assert usage["cache_creation_input_tokens"] == 100
    assert all(c.usage is None for c in chunks[:-1])
    assert {(c.id, c.model) for c in chunks} == {("msg_01S", "claude-sonnet-4-5-20250929")}
    assert claude.thinking.recall("toolu_01A") == [THINKING, REDACTED]


def test_stream_parses_the_same_at_every_split_size() -> None:
    expected = [wire(c) for c in feed_all(STREAM, len(STREAM))]
    created = expected[0]["created"]
    for size in range(1, len(STREAM) + 1):
        got = [wire(c) for c in feed_all(STREAM, size)]
        for chunk in got:
            chunk["created"] = created  # a second may tick between parsers
        assert got == expected, size


def test_message_delta_usage_overwrites_the_start_never_adds() -> None:
    stream = sse(
        START,
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {
                "input_tokens": 30,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 1000,
                "output_tokens": 12,
            },
        },
        {"type": "message_stop"},
    )
    usage = feed_all(stream, len(stream))[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (1130, 12)


def test_error_event_mid_stream_comes_after_the_chunks_before_it() -> None:
    stream = sse(
        START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    parser = adapter().chunk_parser(MODEL)
    chunks = parser.feed(stream)
    assert [wire(c.choices[0].delta) for c in chunks if c.choices] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
    ]
    assert chunks[-1].usage is not None  # the usage so far, for the log
    with pytest.raises(UpstreamUnavailable) as caught:
        parser.finish()
    assert caught.value.status == 503
    assert "Overloaded" in caught.value.message


def test_error_event_first_is_raised_at_once() -> None:
    stream = sse({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    with pytest.raises(RateLimited):
        adapter().chunk_parser(MODEL).feed(stream)


def test_stream_without_message_stop_is_cut() -> None:
    stream = STREAM[: STREAM.index(b"event: message_stop")]
    parser = adapter().chunk_parser(MODEL)
    assert parser.feed(stream)
    # The usage seen so far comes out first (for the log), then the cut.
    last = parser.finish()
    assert [c.usage is not None for c in last] == [True]
    with pytest.raises(UpstreamError) as caught:
        parser.finish()
    assert caught.value.code == "upstream_stream_cut"


def test_garbage_in_a_stream_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="malformed stream event"):
        adapter().chunk_parser(MODEL).feed(b"event: x\ndata: {not json\n\n")


# -- errors ------------------------------------------------------------------------------------


def error_body(kind: str, message: str = "boom") -> bytes:
    return json.dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}
    ).encode()


@pytest.mark.parametrize(
    ("status", "kind", "expected", "gateway_status"),
    [
        (400, "invalid_request_error", InvalidRequest, 400),
        (401, "authentication_error", UpstreamAuthFailed, 502),
        (403, "permission_error", UpstreamAuthFailed, 502),
        (402, "billing_error", UpstreamOutOfCredit, 503),
        (404, "not_found_error", ModelNotFound, 404),
        (413, "request_too_large", RequestTooLarge, 413),
        (429, "rate_limit_error", RateLimited, 429),
        (500, "api_error", UpstreamError, 502),
        (504, "timeout_error", UpstreamTimeout, 504),
        (529, "overloaded_error", UpstreamUnavailable, 503),
    ],
)
def test_error_statuses(
    status: int, kind: str, expected: type[GatewayError], gateway_status: int
) -> None:
    error = adapter().map_error(status, {}, error_body(kind, "the upstream's words"))
    assert type(error) is expected
    assert error.status == gateway_status
    if status not in (401, 403):
        assert "the upstream's words" in error.message


def test_bad_request_keeps_anthropics_message_and_model_404_names_model() -> None:
    error = adapter().map_error(
        400, {}, error_body("invalid_request_error", "max_tokens: Field required")
    )
    assert "max_tokens: Field required" in error.message
    missing = adapter().map_error(404, {}, error_body("not_found_error", "model: claude-nope"))
    assert (missing.param, missing.code) == ("model", "model_not_found")


def test_retry_after_is_passed_on_for_429_and_529() -> None:
    limited = adapter().map_error(429, {"retry-after": "17"}, error_body("rate_limit_error"))
    assert limited.headers["retry-after"] == "17"
    overloaded = adapter().map_error(529, {"retry-after": "5"}, error_body("overloaded_error"))
    assert overloaded.headers["retry-after"] == "5"
    assert overloaded.code == "upstream_overloaded"
    assert "529" in overloaded.message


def test_an_error_body_that_is_not_anthropics_still_maps_by_status() -> None:
    error = adapter().map_error(502, {}, b"<html>Bad Gateway</html>")
    assert isinstance(error, UpstreamError)
    assert "Bad Gateway" in error.message


# -- models ------------------------------------------------------------------------------------


def test_models_are_listed_page_by_page() -> None:
    claude = adapter()
    first = claude.models_call()
    assert (first.method, first.path) == ("GET", "/v1/models?limit=1000")
    assert first.headers["anthropic-version"] == "2023-06-01"
    page = json.dumps(
        {
            "data": [
                {
                    "type": "model",
                    "id": "claude-sonnet-4-5-20250929",
                    "display_name": "Claude Sonnet 4.5",
                    "created_at": "2025-09-29T00:00:00Z",
                },
                {"type": "model", "id": "claude-x", "created_at": "not a date"},
            ],
            "has_more": True,
            "first_id": "claude-sonnet-4-5-20250929",
            "last_id": "claude-x",
        }
    ).encode()
    assert claude.parse_models(page) == [
        ListedModel("claude-sonnet-4-5-20250929", 1759104000),
        ListedModel("claude-x", None),
    ]
    following = claude.next_models_call(page)
    assert following is not None
    assert following.path == "/v1/models?limit=1000&after_id=claude-x"
    last = json.dumps({"data": [], "has_more": False, "last_id": None}).encode()
    assert claude.next_models_call(last) is None
