"""A chat chunk stream as the Messages API's SSE events (anthropic-messages.md §5, §8).

The key property: the official SDK's ``messages.stream()`` assembles, from the events built
out of a chunk stream, the same message as ``messages.create()`` reads from the object built out
of the same answer not streamed, however the deltas are cut.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.chat import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    CompletionTokensDetails,
    Delta,
    FunctionCallDelta,
    PromptTokensDetails,
    ResponseMessage,
    ResponseToolCall,
    ToolCallDelta,
    Usage,
)
from proxy.chat_form import FunctionCall
from proxy.errors import RateLimited, UpstreamError, UpstreamUnavailable
from proxy.messages_events import PING, MessageEventStream
from proxy.messages_from_chat import message_object
from tests.messages_sdk import accumulate, created, decoded, streamed

MODEL = "claude-sonnet-4-5"
USAGE = Usage(
    prompt_tokens=300,
    completion_tokens=90,
    total_tokens=390,
    prompt_tokens_details=PromptTokensDetails(cached_tokens=256),
    completion_tokens_details=CompletionTokensDetails(reasoning_tokens=40),
)


@dataclasses.dataclass
class Script:
    """One answer, said once: as a whole chat answer and as chunks cut where ``cuts`` say."""

    reasoning: str = ""
    content: str = ""
    refusal: str = ""
    calls: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    finish: str = "stop"
    usage: Usage | None = USAGE

    def answer(self) -> ChatResponse:
        fields: dict[str, Any] = {
            "content": self.content or None,
            "refusal": self.refusal or None,
        }
        if self.reasoning:
            fields["reasoning_content"] = self.reasoning
        if self.calls:
            fields["tool_calls"] = [
                ResponseToolCall(i, FunctionCall(n, a)) for i, n, a in self.calls
            ]
        choice = Choice(message=ResponseMessage(**fields), finish_reason=self.finish)
        return ChatResponse(id="c1", created=1, model=MODEL, choices=[choice], usage=self.usage)

    def chunks(self, cuts: list[int] | None = None) -> Iterator[ChatChunk]:
        sizes = iter(cuts or [])

        def pieces(text: str) -> Iterator[str]:
            at = 0
            while at < len(text):
                size = next(sizes, 3) or 1
                yield text[at : at + size]
                at += size

        yield chunk(Delta(role="assistant", content=""))
        for piece in pieces(self.reasoning):
            yield chunk(Delta(reasoning_content=piece))
        for piece in pieces(self.content):
            yield chunk(Delta(content=piece))
        for piece in pieces(self.refusal):
            yield chunk(Delta(refusal=piece))
        for index, (call_id, name, args) in enumerate(self.calls):
            first = FunctionCallDelta(name=name, arguments="")
            yield chunk(Delta(tool_calls=[ToolCallDelta(index, call_id, "function", first)]))
            for piece in pieces(args):
                fragment = ToolCallDelta(index, function=FunctionCallDelta(arguments=piece))
                yield chunk(Delta(tool_calls=[fragment]))
        yield ChatChunk(
            id="c1", created=1, model=MODEL, choices=[ChunkChoice(finish_reason=self.finish)]
        )
        if self.usage is not None:
            yield ChatChunk(id="c1", created=1, model=MODEL, usage=self.usage)


def chunk(delta: Delta) -> ChatChunk:
    return ChatChunk(id="c1", created=1, model=MODEL, choices=[ChunkChoice(delta=delta)])


def run(
    script: Script, raw: dict[str, Any] | None = None, cuts: list[int] | None = None
) -> tuple[list[bytes], MessageEventStream]:
    stream = MessageEventStream(raw or {}, message_id="msg_1", model=MODEL, input_tokens=280)
    events = stream.start()
    for piece in script.chunks(cuts):
        events += stream.feed(piece)
    events += stream.finish()
    return events, stream


SCRIPTS = {
    "text": Script(content="Hello there, world."),
    "reasoning": Script(reasoning="Let me think about it.", content="42."),
    "tools": Script(
        reasoning="Need the weather.",
        content="I'll check.",
        calls=[
            ("call_1", "get_weather", '{"city": "Paris", "unit": "c"}'),
            ("call_2", "get_time", '{"tz": "Europe/Paris"}'),
        ],
        finish="tool_calls",
    ),
    "refusal": Script(refusal="I can't help with that."),
    "length": Script(content="Cut sho", finish="length"),
    "empty": Script(),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_sdk_assembles_from_the_stream_the_message_it_reads_whole(name: str) -> None:
    script = SCRIPTS[name]
    events, stream = run(script)
    whole = message_object(script.answer(), {}, "msg_1", MODEL)
    assert stream.message == whole
    from_stream = streamed(events).model_dump()
    from_stream["content"] = [
        {k: v for k, v in block.items() if k != "parsed_output"} for block in from_stream["content"]
    ]
    assert from_stream == created(whole).model_dump()
    assert accumulate(decoded(events)).model_dump() == created(whole).model_dump()


def test_the_event_order_is_claudes() -> None:
    events, _ = run(SCRIPTS["tools"])
    data = decoded(events)
    kinds = [
        (event["type"], event.get("index"), (event.get("delta") or {}).get("type"))
        for event in data
    ]
    starts = [
        (kind, index)
        for kind, index, _ in kinds
        if kind in ("content_block_start", "content_block_stop")
    ]
    assert kinds[0][0] == "message_start"
    assert starts == [
        ("content_block_start", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_stop", 2),
        ("content_block_start", 3),
        ("content_block_stop", 3),
    ]
    assert [kind for kind, _, _ in kinds[-2:]] == ["message_delta", "message_stop"]
    deltas = {index: delta for kind, index, delta in kinds if kind == "content_block_delta"}
    assert deltas == {
        0: "thinking_delta",
        1: "text_delta",
        2: "input_json_delta",
        3: "input_json_delta",
    }
    blocks = [event["content_block"] for event in data if event["type"] == "content_block_start"]
    assert blocks[0] == {"type": "thinking", "thinking": "", "signature": ""}
    assert blocks[1] == {"type": "text", "text": ""}
    assert blocks[2] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}
    assert data[0]["message"]["content"] == []
    assert data[0]["message"]["stop_reason"] is None


def test_usage_is_the_estimate_at_the_start_and_the_real_totals_at_the_end() -> None:
    events, _ = run(SCRIPTS["text"])
    data = decoded(events)
    assert data[0]["message"]["usage"]["input_tokens"] == 280
    assert data[-2]["usage"] == {
        "input_tokens": 44,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 256,
        "output_tokens": 90,
        "output_tokens_details": {"thinking_tokens": 40},
    }
    assert accumulate(data).usage.input_tokens == 44


def test_usage_given_at_the_finish_wins() -> None:
    stream = MessageEventStream({}, message_id="msg_1", model=MODEL)
    events = stream.feed(chunk(Delta(content="Hi")))
    events += stream.finish(Usage(prompt_tokens=7, completion_tokens=2, total_tokens=9))
    data = decoded(events)
    assert data[0]["type"] == "message_start"  # feeding starts the stream
    assert data[-2]["usage"]["input_tokens"] == 7
    assert stream.message["usage"]["output_tokens"] == 2


def test_without_usage_the_start_estimate_stays() -> None:
    events, stream = run(Script(content="Hi", usage=None))
    assert accumulate(decoded(events)).usage.input_tokens == 280
    assert stream.message["usage"]["input_tokens"] == 280


def test_thinking_display_omitted_streams_no_thinking_text() -> None:
    raw = {"thinking": {"type": "adaptive", "display": "omitted"}}
    events, stream = run(SCRIPTS["reasoning"], raw)
    data = decoded(events)
    assert not any((e.get("delta") or {}).get("type") == "thinking_delta" for e in data)
    assert stream.message == message_object(SCRIPTS["reasoning"].answer(), raw, "msg_1", MODEL)


def test_a_refusal_streams_as_text_and_ends_in_refusal() -> None:
    events, _ = run(SCRIPTS["refusal"])
    data = decoded(events)
    assert data[-2]["delta"]["stop_reason"] == "refusal"
    assert data[-2]["delta"]["stop_details"]["type"] == "refusal"


def test_a_tool_name_sent_after_the_first_fragment_still_starts_the_block() -> None:
    stream = MessageEventStream({}, message_id="msg_1", model=MODEL)
    events = stream.start()
    no_name = ToolCallDelta(0, "call_9", "function", FunctionCallDelta(arguments='{"a"'))
    named = ToolCallDelta(0, function=FunctionCallDelta(name="f", arguments=": 1}"))
    events += stream.feed(chunk(Delta(tool_calls=[no_name])))
    events += stream.feed(chunk(Delta(tool_calls=[named])))
    events += stream.finish()
    data = decoded(events)
    assert data[1]["content_block"]["name"] == "f"
    assert data[2]["delta"] == {"type": "input_json_delta", "partial_json": '{"a": 1}'}
    assert accumulate(data).content[0].input == {"a": 1}  # type: ignore[union-attr]


def test_interleaved_call_fragments_are_an_upstream_error() -> None:
    stream = MessageEventStream({}, message_id="msg_1", model=MODEL)
    stream.start()
    first = FunctionCallDelta(name="a", arguments="{}")
    stream.feed(chunk(Delta(tool_calls=[ToolCallDelta(0, "c0", "function", first)])))
    stream.feed(chunk(Delta(tool_calls=[ToolCallDelta(1, "c1", "function", first)])))
    back = ToolCallDelta(0, function=FunctionCallDelta(arguments=" "))
    with pytest.raises(UpstreamError):
        stream.feed(chunk(Delta(tool_calls=[back])))


def test_arguments_that_are_no_object_fail_the_stream_at_the_block_end() -> None:
    stream = MessageEventStream({}, message_id="msg_1", model=MODEL)
    events = stream.start()
    call = ToolCallDelta(0, "c0", "function", FunctionCallDelta(name="f", arguments="[1]"))
    events += stream.feed(chunk(Delta(tool_calls=[call])))
    with pytest.raises(UpstreamError) as caught:
        stream.finish()
    events += stream.fail(caught.value)
    data = decoded(events)
    assert data[-1] == {
        "type": "error",
        "error": {"type": "api_error", "message": caught.value.message},
    }
    assert "message_stop" not in [event["type"] for event in data]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (UpstreamUnavailable("Provider overloaded."), "overloaded_error"),
        (RateLimited("Slow down."), "rate_limit_error"),
        (UpstreamError("Upstream broke."), "api_error"),
    ],
)
def test_a_failure_after_the_start_is_an_error_event_the_sdk_raises(
    error: Exception, kind: str
) -> None:
    assert isinstance(error, UpstreamError | UpstreamUnavailable | RateLimited)
    stream = MessageEventStream({}, message_id="msg_1", model=MODEL, request_id="req_7")
    events = stream.start() + stream.feed(chunk(Delta(content="Partial")))
    events += stream.fail(error)
    assert stream.fail(error) == []
    assert stream.finish() == []
    data = decoded(events)
    assert data[-1] == {
        "type": "error",
        "error": {"type": kind, "message": error.message},
        "request_id": "req_7",
    }
    assert [event["type"] for event in data].count("message_stop") == 0
    with pytest.raises(anthropic.APIStatusError) as caught:
        streamed(events)
    assert caught.value.body["error"]["type"] == kind  # type: ignore[index]
    assert stream.message["stop_reason"] is None
    assert stream.message["content"] == [{"type": "text", "text": "Partial"}]


def test_ping_is_a_named_event_the_sdk_skips() -> None:
    events, _ = run(SCRIPTS["text"])
    with_ping = [events[0], PING, *events[1:]]
    assert decoded([PING]) == [{"type": "ping"}]
    assert streamed(with_ping).content[0].text == "Hello there, world."  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(
    reasoning=st.text(max_size=30),
    content=st.text(max_size=40),
    calls=st.lists(
        st.tuples(
            st.sampled_from(["get_weather", "Read", "Bash"]),
            st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12), max_size=3),
        ),
        max_size=3,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=7), max_size=40),
)
def test_any_split_of_the_deltas_gives_the_same_message(
    reasoning: str, content: str, calls: list[tuple[str, dict[str, str]]], cuts: list[int]
) -> None:
    import json

    script = Script(
        reasoning=reasoning,
        content=content,
        calls=[(f"call_{i}", name, json.dumps(args)) for i, (name, args) in enumerate(calls)],
        finish="tool_calls" if calls else "stop",
    )
    events, stream = run(script, cuts=cuts)
    whole = message_object(script.answer(), {}, "msg_1", MODEL)
    assert stream.message == whole
    assert accumulate(decoded(events)).model_dump() == created(whole).model_dump()
