"""The openai_compat adapter: the request it builds, and every shape of answer it parses."""

from __future__ import annotations

import json

import pytest

from proxy.chat import CompletionTokensDetails, PromptTokensDetails, Usage, decode_chat_request
from proxy.errors import (
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.providers.base import ListedModel
from proxy.providers.openai_compat import OpenAICompatAdapter, normalize_usage

ADAPTER = OpenAICompatAdapter("openai", "sk-upstream-secret-0000")


def request(**fields: object) -> bytes:
    return json.dumps(
        {"model": "fast", "messages": [{"role": "user", "content": "hi"}], **fields}
    ).encode()


def test_body_passes_unknown_fields_and_renames_the_model() -> None:
    call = ADAPTER.chat_call(decode_chat_request(request(logit_bias={"1": 2})), "gpt-4o-mini")
    assert call.path == "/chat/completions"
    # The key travels in the backend's credential headers, added only for its bound origin.
    assert "authorization" not in call.headers
    assert ADAPTER.credential_headers() == {"authorization": "Bearer sk-upstream-secret-0000"}
    body = json.loads(call.body or b"")
    assert body["model"] == "gpt-4o-mini"
    assert body["logit_bias"] == {"1": 2}


def test_openai_gets_max_completion_tokens_others_keep_max_tokens() -> None:
    chat = decode_chat_request(request(max_tokens=10))
    openai_body = json.loads(ADAPTER.chat_call(chat, "o3").body or b"")
    assert openai_body["max_completion_tokens"] == 10
    assert "max_tokens" not in openai_body
    deepseek = OpenAICompatAdapter("deepseek", "k", flavor="deepseek")
    assert json.loads(deepseek.chat_call(chat, "deepseek-chat").body or b"")["max_tokens"] == 10


def test_streams_always_ask_for_usage_keeping_other_options() -> None:
    chat = decode_chat_request(request(stream=True, stream_options={"include_obfuscation": False}))
    call = ADAPTER.chat_call(chat, "gpt-4o")
    assert call.headers["accept"] == "text/event-stream"
    assert json.loads(call.body or b"")["stream_options"] == {
        "include_obfuscation": False,
        "include_usage": True,
    }


def sse(*events: object) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )


CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-4o",
    "obfuscation": "xyz",
    "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
}
USAGE = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-4o",
    "choices": [],
    "usage": {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 3},
    },
}


def test_stream_parses_chunks_usage_and_done_at_any_split() -> None:
    raw = sse(CHUNK, USAGE, b"[DONE]")
    for size in (1, 7, len(raw)):
        parser = ADAPTER.chunk_parser("gpt-4o")
        chunks = []
        for start in range(0, len(raw), size):
            chunks.extend(parser.feed(raw[start : start + size]))
        chunks.extend(parser.finish())
        assert [c.choices[0].delta.content for c in chunks if c.choices] == ["Hel"]
        usage = chunks[-1].usage
        assert usage is not None
        assert (usage.cached_tokens, usage.reasoning_tokens) == (2, 3)


def test_stream_without_done_is_cut() -> None:
    parser = ADAPTER.chunk_parser("gpt-4o")
    parser.feed(sse(CHUNK))
    with pytest.raises(UpstreamError) as caught:
        parser.finish()
    assert caught.value.code == "upstream_stream_cut"


def test_error_event_mid_stream() -> None:
    parser = ADAPTER.chunk_parser("gpt-4o")
    assert len(parser.feed(sse(CHUNK))) == 1
    with pytest.raises(UpstreamError) as caught:
        parser.feed(sse({"error": {"message": "overloaded", "type": "server_error"}}))
    assert "overloaded" in caught.value.message


@pytest.mark.parametrize("then", ["feed", "finish"])
def test_chunks_read_with_an_error_event_come_first(then: str) -> None:
    # One read holds content and the error after it: the content is returned, the error held
    # and raised by the next call.
    parser = ADAPTER.chunk_parser("gpt-4o")
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    chunks = parser.feed(sse(CHUNK, CHUNK, error, CHUNK))
    assert [c.choices[0].delta.content for c in chunks] == ["Hel", "Hel"]
    assert parser.failure is not None
    with pytest.raises(UpstreamError) as caught:
        parser.feed(sse(CHUNK)) if then == "feed" else parser.finish()
    assert caught.value is parser.failure
    assert "overloaded" in caught.value.message


def test_chunks_read_with_a_garbage_line_come_first() -> None:
    # Not only error events: a line the event stream cannot hold (bad UTF-8) after content in
    # the same read.
    parser = ADAPTER.chunk_parser("gpt-4o")
    chunks = parser.feed(sse(CHUNK) + b"data: \xff\xfe\n\n")
    assert [c.choices[0].delta.content for c in chunks] == ["Hel"]
    with pytest.raises(UpstreamError) as caught:
        parser.finish()
    assert caught.value is parser.failure


@pytest.mark.parametrize("payload", [b"{not json", b'{"id": 5}', b"[1,2]"])
def test_malformed_events_are_upstream_errors(payload: bytes) -> None:
    with pytest.raises(UpstreamError):
        ADAPTER.chunk_parser("gpt-4o").feed(sse(payload))


def test_response_parse_and_garbage() -> None:
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    response = ADAPTER.parse_response(json.dumps(body).encode(), "gpt-4o")
    assert response.choices[0].message.content == "hi"
    with pytest.raises(UpstreamError):
        ADAPTER.parse_response(b"<html>", "gpt-4o")


def error(message: str, code: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": "x", "param": None, "code": code}}
    ).encode()


@pytest.mark.parametrize(
    ("status", "kind", "gateway_status"),
    [
        (400, InvalidRequest, 400),
        (404, ModelNotFound, 404),
        (422, InvalidRequest, 400),
        (429, RateLimited, 429),
        (500, UpstreamError, 502),
        (502, UpstreamError, 502),
        (503, UpstreamUnavailable, 503),
        (504, UpstreamTimeout, 504),
    ],
)
def test_error_statuses(status: int, kind: type[Exception], gateway_status: int) -> None:
    mapped = ADAPTER.map_error(status, {"retry-after": "4"}, error("nope"))
    assert isinstance(mapped, kind)
    assert mapped.status == gateway_status
    assert "nope" in mapped.message


def test_429_keeps_retry_after() -> None:
    mapped = ADAPTER.map_error(429, {"retry-after": "4", "x-other": "1"}, error("slow down"))
    assert mapped.headers == {"retry-after": "4"}


@pytest.mark.parametrize("status", [401, 403])
def test_upstream_credential_failure_is_never_a_client_401(status: int) -> None:
    mapped = ADAPTER.map_error(status, {}, error("Incorrect API key provided: sk-up…0000"))
    assert mapped.status == 502
    assert mapped.code == "upstream_auth_failed"
    assert "sk-" not in mapped.message


def test_string_shaped_and_non_json_error_bodies() -> None:
    xai = json.dumps({"code": "bad", "error": "Incorrect API key"}).encode()
    assert "Incorrect" not in ADAPTER.map_error(401, {}, xai).message
    assert "teapot" in ADAPTER.map_error(400, {}, b"I am a teapot").message


def test_models_list() -> None:
    body = json.dumps({"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]})
    assert ADAPTER.parse_models(body.encode()) == [ListedModel("gpt-4o")]
    with pytest.raises(UpstreamError):
        ADAPTER.parse_models(b"{}")


def test_models_list_keeps_created_and_shrugs_off_odd_values() -> None:
    data = [
        {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
        {"id": "deepseek-chat", "object": "model", "owned_by": "deepseek"},  # DeepSeek: none
        {"id": "odd-1", "created": "yesterday"},
        {"id": "odd-2", "created": True},
        {"id": "odd-3", "created": -5},
        {"id": "odd-4", "created": 1715367049.9},
    ]
    listed = ADAPTER.parse_models(json.dumps({"data": data}).encode())
    assert [(m.id, m.created) for m in listed] == [
        ("gpt-4o", 1715367049),
        ("deepseek-chat", None),
        ("odd-1", None),
        ("odd-2", None),
        ("odd-3", None),
        ("odd-4", 1715367049),
    ]


def test_deepseek_cache_counters_also_become_cached_tokens() -> None:
    usage = Usage(
        prompt_tokens=12,
        completion_tokens=3,
        total_tokens=15,
        prompt_tokens_details=None,
        prompt_cache_hit_tokens=8,
        prompt_cache_miss_tokens=4,
    )
    normalize_usage(usage, "deepseek")
    assert usage.cached_tokens == 8
    # DeepSeek's own counters stay: a client of DeepSeek may read them.
    assert usage.prompt_cache_hit_tokens == 8


def test_newer_deepseek_cached_tokens_win_over_counters() -> None:
    usage = Usage(
        prompt_tokens=12,
        completion_tokens=3,
        total_tokens=15,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=5),
        prompt_cache_hit_tokens=8,
    )
    normalize_usage(usage, "deepseek")
    assert usage.cached_tokens == 5


def test_xai_reasoning_moves_into_completion_tokens_once() -> None:
    usage = Usage(
        prompt_tokens=26,
        completion_tokens=168,
        total_tokens=498,
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=304),
    )
    normalize_usage(usage, "grok")
    assert usage.completion_tokens == 472
    normalize_usage(usage, "grok")  # already OpenAI's meaning: total = prompt + completion
    assert usage.completion_tokens == 472


def test_openai_usage_is_left_alone() -> None:
    usage = Usage(
        prompt_tokens=10,
        completion_tokens=50,
        total_tokens=60,
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=40),
    )
    normalize_usage(usage, "openai")
    normalize_usage(usage, "grok")  # not xAI's shape either: total already counts reasoning
    assert usage.completion_tokens == 50


def test_insufficient_system_resource_is_unavailable() -> None:
    parser = ADAPTER.chunk_parser("deepseek-chat")
    chunk = {
        **CHUNK,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "insufficient_system_resource"}],
    }
    with pytest.raises(UpstreamUnavailable):
        parser.feed(sse(chunk))


def test_keepalive_comments_and_blank_lines_are_skipped() -> None:
    parser = ADAPTER.chunk_parser("deepseek-chat")
    chunks = parser.feed(
        b": keep-alive\n\n\n\n" + sse(CHUNK) + b": keep-alive\n\n" + sse(b"[DONE]")
    )
    assert len(chunks) == 1
    assert parser.finish() == []


def test_xai_string_error_for_a_bad_key_is_upstream_auth() -> None:
    body = json.dumps(
        {
            "code": "Client specified an invalid argument",
            "error": "Incorrect API key provided: xa***",
        }
    )
    mapped = ADAPTER.map_error(400, {}, body.encode())
    assert mapped.status == 502
    assert mapped.code == "upstream_auth_failed"
