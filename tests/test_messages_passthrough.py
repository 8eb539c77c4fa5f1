"""The Messages request view and the passthrough to upstreams that serve ``/v1/messages``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.errors import InvalidRequest, UpstreamError, UpstreamUnavailable
from proxy.messages import MessagesHeaders, decode_messages_request
from proxy.providers.base import PassedEvent
from proxy.providers.messages_passthrough import MessagesPassthrough
from proxy.token_estimate import IMAGE_TOKENS, estimate_prompt_tokens, tokens_to_reserve

HELLO = [{"role": "user", "content": "hi"}]
PNG_HEAD = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
)
PNG = PNG_HEAD + "rkJggg=="


def _body(**fields: Any) -> bytes:
    return json.dumps(
        {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": HELLO, **fields}
    ).encode()


# -- the request view --------------------------------------------------------------------------


def test_the_view_reads_what_the_gateway_acts_on() -> None:
    request = decode_messages_request(_body(stream=True, cache_control={"type": "ephemeral"}))
    assert request.model == "claude-sonnet-4-5"
    assert request.stream is True
    assert request.max_answer_tokens == 64
    assert request.raw["cache_control"] == {"type": "ephemeral"}  # the upstream's to judge
    assert decode_messages_request(_body(stream=None)).stream is False


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"max_tokens": 1, "messages": []}', "model"),
        (json.dumps({"model": "m", "messages": HELLO}).encode(), "max_tokens"),
        (json.dumps({"model": "m", "max_tokens": 1}).encode(), "messages"),
        (_body(model=""), "model"),
        (_body(max_tokens=-1), "max_tokens"),
        (_body(max_tokens="many"), "max_tokens"),
        (_body(messages=[]), "messages"),
        (_body(messages=["hi"]), "messages[0]"),
        (_body(stream="yes"), "stream"),
    ],
)
def test_bad_fields_are_named(body: bytes, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_messages_request(body)
    assert caught.value.param == param


def test_count_tokens_bodies_need_no_max_tokens() -> None:
    body = json.dumps({"model": "m", "messages": HELLO}).encode()
    assert decode_messages_request(body, counting=True).max_answer_tokens is None


def test_images_are_seen_in_messages_and_tool_results_and_counted_as_images() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG * 100},
    }
    in_result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [image]}
    for content in ([image], [in_result]):
        body = _body(messages=[{"role": "user", "content": content}])
        request = decode_messages_request(body)
        assert request.has_images
        # The base64 counts as an image, not as a quarter of its length in tokens.
        assert estimate_prompt_tokens(request, len(body)) < len(PNG * 100) // 4
        assert estimate_prompt_tokens(request, len(body)) >= IMAGE_TOKENS
    assert not decode_messages_request(_body()).has_images


def test_a_messages_call_reserves_its_prompt_and_its_bound() -> None:
    body = _body(max_tokens=1000)
    request = decode_messages_request(body)
    reserved = tokens_to_reserve(request, len(body), default_completion=10, tokens_per_minute=10**6)
    assert reserved == -(-len(body) // 4) + 1000


# -- the call ------------------------------------------------------------------------------------


def _passthrough() -> MessagesPassthrough:
    return MessagesPassthrough("anthropic", api_version="2023-06-01")


def test_the_body_goes_up_with_the_model_renamed_and_the_clients_protocol_headers() -> None:
    request = decode_messages_request(_body(stream=True, thinking={"type": "adaptive"}))
    sent = request.with_headers(
        MessagesHeaders(
            version="2026-10-21",
            beta="claude-code-20250219,interleaved-thinking-2025-05-14",
            beta_query=True,
        )
    )
    call = _passthrough().call(sent, "claude-sonnet-4-5-20250929")
    assert (call.method, call.path) == ("POST", "/v1/messages?beta=true")
    assert call.headers["anthropic-version"] == "2026-10-21"
    assert call.headers["anthropic-beta"] == "claude-code-20250219,interleaved-thinking-2025-05-14"
    assert call.headers["accept"] == "text/event-stream"
    assert call.body is not None
    assert json.loads(call.body) == {**request.raw, "model": "claude-sonnet-4-5-20250929"}
    # Without the client's headers: the provider's pinned version, no beta, no query.
    plain = _passthrough().call(request, "m")
    assert (plain.path, plain.headers["anthropic-version"]) == ("/v1/messages", "2023-06-01")
    assert "anthropic-beta" not in plain.headers
    counted = _passthrough().count_tokens_call(sent, "m")
    assert counted.path == "/v1/messages/count_tokens?beta=true"
    assert counted.headers["accept"] == "application/json"


def test_an_answer_comes_back_as_its_bytes_with_every_input_token_counted() -> None:
    body = (
        b'{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"hi",'
        b'"citations":[{"type":"char_location"}]}],"stop_reason":"end_turn","usage":'
        b'{"input_tokens":10,"cache_creation_input_tokens":20,"cache_read_input_tokens":30,'
        b'"output_tokens":5,"output_tokens_details":{"thinking_tokens":2},"future":1}}'
    )
    answer = _passthrough().answer(body)
    assert answer.body is body
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (60, 5)
    assert answer.usage.total_tokens == 65
    assert answer.usage.cached_tokens == 30
    assert answer.usage.cache_write_tokens == 20
    assert answer.usage.reasoning_tokens == 2
    assert _passthrough().answer(b'{"id":"msg_1"}').usage is None
    with pytest.raises(UpstreamError):
        _passthrough().answer(b"<html>")


STREAM = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "usage": {
                    "input_tokens": 25,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 100,
                    "output_tokens": 1,
                },
            },
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "lo \u00e9"},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 12},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


def _sse(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
        for name, data in events
    )


def _parse(data: bytes, cut_every: int | None = None) -> list[PassedEvent]:
    parser = _passthrough().event_parser(decode_messages_request(_body(stream=True)))
    pieces = (
        [data]
        if cut_every is None
        else [data[i : i + cut_every] for i in range(0, len(data), cut_every)]
    )
    items: list[PassedEvent] = []
    for piece in pieces:
        items += parser.feed(piece)
    items += parser.finish()
    return items


@pytest.mark.parametrize("cut_every", [None, 1, 7, 64])
def test_every_event_passes_as_its_name_and_data_wherever_the_reads_split(
    cut_every: int | None,
) -> None:
    data = _sse(STREAM)
    items = _parse(data, cut_every)
    assert [item.event for item in items] == [name for name, _ in STREAM]
    rebuilt = b"".join(
        b"event: " + (i.event or "").encode() + b"\ndata: " + (i.data or b"") + b"\n\n"
        for i in items
    )
    assert [
        json.loads(block.split(b"data: ", 1)[1]) for block in rebuilt.split(b"\n\n") if block
    ] == [data for _, data in STREAM]
    assert "".join(i.text or "" for i in items) == "Hello \u00e9"
    usages = [i.usage for i in items if i.usage is not None]
    # message_start's input side, then message_delta's cumulative output: never added twice.
    assert [(u.prompt_tokens, u.completion_tokens, u.cached_tokens) for u in usages] == [
        (125, 1, 100),
        (125, 12, 100),
    ]
    assert [i.terminal for i in items] == [False] * (len(STREAM) - 1) + [True]


def test_an_error_event_reaches_the_client_then_ends_the_call_as_an_error() -> None:
    parser = _passthrough().event_parser(decode_messages_request(_body(stream=True)))
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    items = parser.feed(_sse([*STREAM[:4], ("error", overloaded)]))
    assert items[-1].event == "error"
    assert items[-1].terminal
    assert json.loads(items[-1].data or b"") == overloaded
    assert isinstance(parser.failure, UpstreamUnavailable)  # an overload, as a 529 is
    with pytest.raises(UpstreamUnavailable, match="Overloaded"):
        parser.finish()
    other = _passthrough().event_parser(decode_messages_request(_body(stream=True)))
    other.feed(_sse([("error", {"type": "error", "error": {"type": "api_error", "message": "x"}})]))
    with pytest.raises(UpstreamError, match="failed the message: x"):
        other.finish()


def test_a_stream_without_message_stop_is_cut() -> None:
    with pytest.raises(UpstreamError) as caught:
        _parse(_sse(STREAM[:-1]))
    assert caught.value.code == "upstream_stream_cut"


def test_an_event_that_is_not_json_is_malformed() -> None:
    with pytest.raises(UpstreamError):
        _parse(b"event: message_start\ndata: {nope\n\n")
