"""The Responses request view and the passthrough to upstreams that serve ``/responses``."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from proxy.errors import InvalidRequest, UpstreamError
from proxy.providers.base import PassedEvent
from proxy.providers.openai_compat import OpenAICompatAdapter
from proxy.providers.responses_passthrough import ResponsesPassthrough
from proxy.responses import ResponsesRequest, decode_responses_request
from proxy.token_estimate import IMAGE_TOKENS, tokens_to_reserve


def _body(**fields: Any) -> bytes:
    return json.dumps({"model": "gpt-4o", "input": "hi", **fields}).encode()


# -- the request view --------------------------------------------------------------------------


def test_the_view_reads_what_the_gateway_acts_on() -> None:
    request = decode_responses_request(
        _body(stream=None, max_output_tokens=64, previous_response_id="resp_1", extra={"x": 1})
    )
    assert request.model == "gpt-4o"
    assert request.stream is False  # null means false
    assert request.stored is True  # OpenAI's default
    assert request.max_answer_tokens == 64
    assert request.view.previous_response_id == "resp_1"
    assert request.raw["extra"] == {"x": 1}  # unknown fields stay for the upstream
    assert decode_responses_request(_body(store=False, stream=True)).stored is False


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"input": "hi"}', "model"),
        (_body(model=""), "model"),
        (_body(input=5), "input"),
        (_body(input=["not an item"]), "input[0]"),
        (_body(stream="yes"), "stream"),
        (_body(max_output_tokens=0), "max_output_tokens"),
        (_body(previous_response_id=""), "previous_response_id"),
    ],
)
def test_bad_fields_are_named(body: bytes, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_responses_request(body)
    assert caught.value.param == param


@pytest.mark.parametrize("body", [b"[]", b"not json", b"\xff", b"[" * 100 + b"]" * 100])
def test_a_body_that_is_no_object_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        decode_responses_request(body)


def test_images_are_seen_in_messages_and_tool_outputs() -> None:
    image = {"type": "input_image", "image_url": "https://example.com/a.png"}
    in_message = [{"role": "user", "content": [{"type": "input_text", "text": "?"}, image]}]
    in_output = [{"type": "function_call_output", "call_id": "c", "output": [image]}]
    assert decode_responses_request(_body(input=in_message)).has_images
    assert decode_responses_request(_body(input=in_output)).has_images
    assert not decode_responses_request(_body()).has_images


# -- the call ------------------------------------------------------------------------------------


def test_the_body_goes_up_as_sent_with_the_model_renamed() -> None:
    tools = [{"type": "web_search"}, {"type": "function", "name": "f", "parameters": {}}]
    request = decode_responses_request(
        _body(tools=tools, include=["reasoning.encrypted_content"], stream=True)
    )
    call = ResponsesPassthrough("openai").call(request, "gpt-4o-2024-08-06")
    assert (call.method, call.path) == ("POST", "/responses")
    assert call.headers["accept"] == "text/event-stream"
    assert call.body is not None
    assert json.loads(call.body) == {**request.raw, "model": "gpt-4o-2024-08-06"}


def test_openai_and_xai_pass_responses_through_and_deepseek_does_not() -> None:
    protocol = ResponsesRequest.PROTOCOL
    assert OpenAICompatAdapter("openai", "k").passthrough_for(protocol) is not None
    assert OpenAICompatAdapter("grok", "k", flavor="grok").passthrough_for(protocol) is not None
    assert OpenAICompatAdapter("deepseek", "k", flavor="deepseek").passthrough_for(protocol) is None


# -- the answer ----------------------------------------------------------------------------------

USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
    "output_tokens": 8,
    "output_tokens_details": {"reasoning_tokens": 3},
    "total_tokens": 20,
}


def test_an_answer_comes_back_as_its_bytes_with_its_usage_read() -> None:
    body = json.dumps(
        {"id": "resp_1", "object": "response", "status": "completed", "usage": USAGE, "new": [1]},
        indent=1,
    ).encode()
    answer = ResponsesPassthrough("openai").answer(body)
    assert answer.body is body
    usage = answer.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 8, 20)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (2, 3)


def test_an_answer_without_usage_or_that_is_garbage() -> None:
    passthrough = ResponsesPassthrough("openai")
    assert passthrough.answer(b'{"id": "resp_1", "usage": null}').usage is None
    with pytest.raises(UpstreamError):
        passthrough.answer(b"<html>")


# -- the stream ----------------------------------------------------------------------------------


def _event(kind: str, **fields: Any) -> bytes:
    data = json.dumps({"type": kind, **fields}, separators=(",", ":"))
    return f"event: {kind}\ndata: {data}\n\n".encode()


def _response(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": status, **fields}


def _stream(*terminal: bytes) -> list[bytes]:
    return [
        _event("response.created", sequence_number=0, response=_response("in_progress")),
        _event("response.output_item.added", sequence_number=1, output_index=0, item={}),
        _event("response.web_search_call.searching", sequence_number=2, item_id="ws_1"),
        _event("response.output_text.delta", sequence_number=3, delta="Hel", obfuscation="ab"),
        _event("response.output_text.delta", sequence_number=4, delta="lo", future={"a": 1}),
        *terminal,
    ]


def _parse(events: list[bytes], cut: int) -> tuple[list[PassedEvent], Exception | None]:
    """The items of the stream fed in two reads split at byte ``cut``, and its end."""
    parser = ResponsesPassthrough("openai").event_parser(decode_responses_request(_body()))
    whole = b"".join(events)
    items: list[PassedEvent] = []
    try:
        items += parser.feed(whole[:cut])
        items += parser.feed(whole[cut:])
        items += parser.finish()
    except UpstreamError as exc:
        return items, exc
    return items, None


def test_every_event_passes_as_its_name_and_data_wherever_the_reads_split() -> None:
    completed = _event("response.completed", sequence_number=5, response=_response("completed"))
    events = _stream(completed)
    completed_usage = _event(
        "response.completed", sequence_number=5, response=_response("completed", usage=USAGE)
    )
    events[-1] = completed_usage
    whole = b"".join(events)
    for cut in range(len(whole) + 1):
        items, end = _parse(events, cut)
        assert end is None
        assert [(item.event, item.data) for item in items] == [
            (json.loads(e.split(b"\ndata: ")[1])["type"], e.split(b"\ndata: ")[1][:-2])
            for e in events
        ]
        assert "".join(item.text or "" for item in items) == "Hello"
        assert [item.terminal for item in items] == [False] * 5 + [True]
        usage = items[-1].usage
        assert usage is not None
        assert usage.total_tokens == 20


def test_a_failed_response_reaches_the_client_then_ends_the_call_as_an_error() -> None:
    failed = _event(
        "response.failed",
        sequence_number=5,
        response=_response("failed", error={"code": "server_error", "message": "boom"}),
    )
    items, end = _parse(_stream(failed), 0)
    assert items[-1].terminal
    assert items[-1].data is not None
    assert msgspec.json.decode(items[-1].data)["type"] == "response.failed"
    assert isinstance(end, UpstreamError)
    assert end.code == "server_error"
    assert "boom" in end.message


def test_an_error_event_ends_the_stream_too() -> None:
    items, end = _parse(_stream(_event("error", code="rate_limit_exceeded", message="slow")), 7)
    assert items[-1].event == "error"
    assert items[-1].terminal
    assert isinstance(end, UpstreamError)
    assert end.code == "rate_limit_exceeded"


def test_a_stream_without_a_terminal_event_is_cut() -> None:
    items, end = _parse(_stream(), 0)
    assert len(items) == 5
    assert isinstance(end, UpstreamError)
    assert end.code == "upstream_stream_cut"


def test_an_incomplete_answer_is_no_error() -> None:
    incomplete = _event(
        "response.incomplete",
        sequence_number=5,
        response=_response("incomplete", incomplete_details={"reason": "max_output_tokens"}),
    )
    items, end = _parse(_stream(incomplete), 3)
    assert end is None
    assert items[-1].terminal


def test_an_event_that_is_not_json_is_malformed() -> None:
    items, end = _parse([b"event: x\ndata: {oops\n\n"], 0)
    assert items == []
    assert isinstance(end, UpstreamError)


# -- the reservation -----------------------------------------------------------------------------


def test_a_responses_call_reserves_its_prompt_and_its_bound() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64," + "A" * 40_000}
    body = _body(input=[{"role": "user", "content": [image]}], max_output_tokens=100)
    request = decode_responses_request(body)
    reserved = tokens_to_reserve(
        request, len(body), default_completion=4096, tokens_per_minute=100_000
    )
    # The image counts as an image, not as 10,000 tokens of base64; the answer as its bound.
    assert IMAGE_TOKENS + 100 < reserved < IMAGE_TOKENS + 100 + 100
