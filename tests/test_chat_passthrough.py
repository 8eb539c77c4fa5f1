"""OpenAI chat passed through: what goes up as sent, what comes back byte for byte, and the few
edits the gateway owes its client (usage it did not ask for, provider usage quirks)."""

from __future__ import annotations

import json

import pytest

from proxy.chat import decode_chat_request
from proxy.errors import UpstreamError, UpstreamUnavailable
from proxy.providers.base import PassedEvent, Passthrough
from proxy.providers.openai_compat import OpenAICompatAdapter

OPENAI = OpenAICompatAdapter("openai", "k").passthrough_for("openai-chat")
GROK = OpenAICompatAdapter("grok", "k", flavor="grok").passthrough_for("openai-chat")
DEEPSEEK = OpenAICompatAdapter("deepseek", "k", flavor="deepseek").passthrough_for("openai-chat")


def passthrough(adapter: Passthrough | None) -> Passthrough:
    assert adapter is not None
    return adapter


def chat(**fields: object) -> bytes:
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], **fields}
    return json.dumps(body).encode()


def events(*payloads: bytes) -> bytes:
    return b"".join(b"data: " + p + b"\n\n" for p in payloads) + b"data: [DONE]\n\n"


# Compact, as OpenAI sends them (the bytes must come back exactly).
ANSWER = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1700000123,"model":"gpt-4o",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null,'
    b'"annotations":[{"type":"url_citation","url_citation":{"url":"https://x.test"}}],'
    b'"future_field":{"a":[1,2.50,"\\u00e9"]}},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6,'
    b'"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
    b'"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
    b'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},'
    b'"service_tier":"default","system_fingerprint":"fp_1"}'
)


def test_unknown_fields_tools_and_parts_go_up_as_sent() -> None:
    body = chat(
        tools=[{"type": "custom", "custom": {"name": "grep", "format": {"type": "text"}}}],
        messages=[{"role": "user", "content": [{"type": "input_video", "video": "v"}]}],
        prompt_cache_key="k1",
        stream=None,
        brand_new={"x": 1},
    )
    call = passthrough(OPENAI).call(decode_chat_request(body), "gpt-4o")
    sent = json.loads(call.body or b"")
    expected = json.loads(body)
    expected["model"] = "gpt-4o"
    assert sent == expected
    assert call.headers["accept"] == "application/json"  # stream: null is not a stream


def test_a_whole_answer_comes_back_byte_for_byte() -> None:
    answer = passthrough(OPENAI).answer(ANSWER)
    assert answer.body == ANSWER
    assert answer.usage is not None
    assert answer.usage.total_tokens == 6


def test_xai_usage_is_the_one_edit_and_keeps_everything_else() -> None:
    body = (
        b'{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":168,'
        b'"total_tokens":498,"completion_tokens_details":{"reasoning_tokens":304},'
        b'"num_sources_used":0},"citations":["https://x.test"]}'
    )
    answer = passthrough(GROK).answer(body)
    document = json.loads(answer.body)
    expected = json.loads(body)
    expected["usage"]["completion_tokens"] = 472
    assert document == expected
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 472


def test_deepseek_cache_hits_are_also_given_as_cached_tokens() -> None:
    body = (
        b'{"id":"d","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,'
        b'"total_tokens":15,"prompt_cache_hit_tokens":8,"prompt_cache_miss_tokens":4}}'
    )
    answer = passthrough(DEEPSEEK).answer(body)
    usage = json.loads(answer.body)["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 8}
    assert usage["prompt_cache_hit_tokens"] == 8
    assert answer.usage is not None
    assert answer.usage.cached_tokens == 8


def test_an_answer_that_is_no_chat_completion_is_a_502() -> None:
    for body in (b"not json", b'{"id": "x"}', b"[]", b'{"choices": 3}'):
        with pytest.raises(UpstreamError):
            passthrough(OPENAI).answer(body)


def test_events_come_back_byte_for_byte_with_usage_read() -> None:
    first = b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"He"},"obfuscation":"x1"}],"usage":null}'  # noqa: E501
    last = b'{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4},"future":1}'  # noqa: E501
    request = decode_chat_request(chat(stream=True, stream_options={"include_usage": True}))
    parser = passthrough(OPENAI).event_parser(request)
    items = parser.feed(events(first, last)) + parser.finish()
    assert [item.data for item in items] == [first, last]
    assert items[0].text == "He"
    assert items[1].usage is not None
    assert items[1].usage.total_tokens == 4


def test_usage_the_client_did_not_ask_for_is_withheld() -> None:
    first = b'{"id":"c","choices":[{"index":0,"delta":{"content":"He"}}],"usage":null}'
    last = b'{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'  # noqa: E501
    parser = passthrough(OPENAI).event_parser(decode_chat_request(chat(stream=True)))
    items = parser.feed(events(first, last)) + parser.finish()
    # The chunk as it would have been without usage asked for; the usage chunk read, not sent.
    assert items[0].data == b'{"id":"c","choices":[{"index":0,"delta":{"content":"He"}}]}'
    assert items[1] == PassedEvent(None, items[1].usage, None)
    assert items[1].usage is not None
    assert items[1].usage.total_tokens == 4


def test_a_usage_null_inside_a_string_is_not_touched() -> None:
    payload = b'{"id":"c","choices":[{"index":0,"delta":{"content":",\\"usage\\":null}"}}]}'
    parser = passthrough(OPENAI).event_parser(decode_chat_request(chat(stream=True)))
    assert parser.feed(events(payload))[0].data == payload


def test_xai_usage_is_fixed_in_its_event_alone() -> None:
    content = b'{"id":"g","choices":[{"index":0,"delta":{"content":"ok"}}]}'
    usage = (
        b'{"id":"g","choices":[],"usage":{"prompt_tokens":26,"completion_tokens":168,'
        b'"total_tokens":498,"completion_tokens_details":{"reasoning_tokens":304}}}'
    )
    request = decode_chat_request(chat(stream=True, stream_options={"include_usage": True}))
    parser = passthrough(GROK).event_parser(request)
    items = parser.feed(events(content, usage))
    assert items[0].data == content
    assert items[1].data is not None
    assert json.loads(items[1].data)["usage"]["completion_tokens"] == 472


def test_error_event_and_cut_stream() -> None:
    parser = passthrough(OPENAI).event_parser(decode_chat_request(chat(stream=True)))
    content = b'{"id":"c","choices":[{"index":0,"delta":{"content":"He"}}]}'
    error = b'{"error":{"message":"overloaded","code":"server_error"}}'
    items = parser.feed(b"data: " + content + b"\n\ndata: " + error + b"\n\n")
    assert [item.data for item in items] == [content]  # the content first, then the error
    with pytest.raises(UpstreamError, match="overloaded"):
        parser.feed(b"")
    cut = passthrough(OPENAI).event_parser(decode_chat_request(chat(stream=True)))
    cut.feed(b"data: " + content + b"\n\n")
    with pytest.raises(UpstreamError, match="before it was complete"):
        cut.finish()


def test_deepseek_out_of_capacity_is_an_outage() -> None:
    payload = b'{"id":"d","choices":[{"index":0,"delta":{},"finish_reason":"insufficient_system_resource"}]}'  # noqa: E501
    parser = passthrough(DEEPSEEK).event_parser(decode_chat_request(chat(stream=True)))
    with pytest.raises(UpstreamUnavailable):
        parser.feed(events(payload))
