"""A chat answer as a Responses object and as its SSE event sequence (responses-api.md §5, §6, §8).

The key property: the official SDK's ``responses.stream()`` assembles, from the events built out
of a chunk stream, the same final response as ``responses.parse()`` reads from the object built
out of the same answer not streamed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response

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
from proxy.errors import RateLimited, UpstreamError
from proxy.providers.logprobs import ChoiceLogprobs, TokenLogprob, TopLogprob
from proxy.responses_events import ResponseEventStream
from proxy.responses_from_chat import output_logprobs, response_object, response_usage
from tests.responses_sdk import accumulate, decoded

MODEL = "deepseek-reasoner"
BODY: dict[str, Any] = {"model": MODEL, "input": "hi"}
USAGE = Usage(
    prompt_tokens=120,
    completion_tokens=80,
    total_tokens=200,
    prompt_tokens_details=PromptTokensDetails(cached_tokens=64),
    completion_tokens_details=CompletionTokensDetails(reasoning_tokens=50),
)


@dataclasses.dataclass
class Script:
    """One answer, said once: as a whole chat answer and as chunks cut where ``cuts`` say."""

    reasoning: str = ""
    content: str = ""
    refusal: str = ""
    calls: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    finish: str = "stop"
    usage: Usage | None = None

    def answer(self) -> ChatResponse:
        message = ResponseMessage(content=self.content or None, refusal=self.refusal or None)
        if self.reasoning:
            message = _with(message, reasoning_content=self.reasoning)
        if self.calls:
            calls = [
                ResponseToolCall(id, FunctionCall(name, args)) for id, name, args in self.calls
            ]
            message = _with(message, tool_calls=calls)
        choice = Choice(message=message, finish_reason=self.finish)
        return ChatResponse(id="c1", created=1, model=MODEL, choices=[choice], usage=self.usage)

    def chunks(self, cut: int = 3) -> Iterator[ChatChunk]:
        yield chunk(Delta(role="assistant", content=""))
        for piece in pieces(self.reasoning, cut):
            yield chunk(Delta(reasoning_content=piece))
        for piece in pieces(self.content, cut):
            yield chunk(Delta(content=piece))
        for piece in pieces(self.refusal, cut):
            yield chunk(Delta(refusal=piece))
        for index, (call_id, name, args) in enumerate(self.calls):
            first = FunctionCallDelta(name=name, arguments="")
            yield chunk(Delta(tool_calls=[ToolCallDelta(index, call_id, "function", first)]))
            for piece in pieces(args, cut):
                fragment = ToolCallDelta(index, function=FunctionCallDelta(arguments=piece))
                yield chunk(Delta(tool_calls=[fragment]))
        yield ChatChunk(
            id="c1", created=1, model=MODEL, choices=[ChunkChoice(finish_reason=self.finish)]
        )
        if self.usage is not None:
            yield ChatChunk(id="c1", created=1, model=MODEL, usage=self.usage)


def _with(message: ResponseMessage, **fields: Any) -> ResponseMessage:
    values = {field: getattr(message, field) for field in message.__struct_fields__}
    return ResponseMessage(**{**values, **fields})


def chunk(delta: Delta) -> ChatChunk:
    return ChatChunk(id="c1", created=1, model=MODEL, choices=[ChunkChoice(delta=delta)])


def pieces(text: str, cut: int) -> list[str]:
    return [text[i : i + cut] for i in range(0, len(text), cut)]


def stream_events(
    script: Script, body: dict[str, Any] = BODY, cut: int = 3
) -> tuple[list[bytes], ResponseEventStream]:
    stream = ResponseEventStream(body, response_id="resp_1", created_at=1700000000, model=MODEL)
    events = stream.start()
    for piece in script.chunks(cut):
        events += stream.feed(piece)
    events += stream.finish(None)
    return events, stream


def normalised(response: dict[str, Any]) -> dict[str, Any]:
    """The response with what is fresh on every build (item ids, completion time) made stable."""
    copy: dict[str, Any] = json.loads(json.dumps(response))
    for index, item in enumerate(copy["output"]):
        item["id"] = f"{item['type']}-{index}"
    copy["completed_at"] = copy["completed_at"] and 1
    return copy


def sdk_client(answer: bytes, content_type: str) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": content_type}, content=answer)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(
        api_key="sk-test", base_url="http://gateway.test/v1", http_client=http, max_retries=0
    )


SCRIPTS = {
    "text": Script(content="Hello there, how are you?", usage=USAGE),
    "reasoning and text": Script(
        reasoning="The user greets; greet back.", content="Hi!", usage=USAGE
    ),
    "refusal": Script(refusal="I can't help with that."),
    "one call": Script(calls=[("call_1", "weather", '{"city":"Paris"}')], finish="tool_calls"),
    "text then calls": Script(
        reasoning="Two cities.",
        content="Checking both.",
        calls=[("call_1", "weather", '{"city":"Paris"}'), ("call_2", "weather", '{"city":"Rome"}')],
        finish="tool_calls",
        usage=USAGE,
    ),
    "length stop": Script(content="This answer was cut sh", finish="length", usage=USAGE),
    "length stop in calls": Script(
        calls=[("c1", "f", "{}"), ("c2", "f", '{"a":')], finish="length"
    ),
    "content filter": Script(content="Some", finish="content_filter"),
    "empty": Script(),
}


# -- usage ---------------------------------------------------------------------------------------


def test_usage_carries_all_five_counts_and_both_details() -> None:
    assert response_usage(USAGE) == {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
        "output_tokens": 80,
        "output_tokens_details": {"reasoning_tokens": 50},
        "total_tokens": 200,
    }
    bare = Usage(
        prompt_tokens=3,
        completion_tokens=0,
        total_tokens=3,
        prompt_tokens_details=None,
        completion_tokens_details=None,
    )
    assert response_usage(bare) == {
        "input_tokens": 3,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 3,
    }
    assert response_usage(None) is None


# -- the whole object ----------------------------------------------------------------------------


def build(script: Script, body: dict[str, Any] = BODY) -> dict[str, Any]:
    obj = response_object(
        script.answer(), body, response_id="resp_1", created_at=1700000000, model=MODEL
    )
    Response.model_validate(obj)  # every shape the SDK declares, required fields included
    return obj


def test_a_text_answer_is_one_message_with_the_settings_echoed() -> None:
    body = {
        **BODY,
        "instructions": "Be brief.",
        "tools": [
            {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}
        ],
        "tool_choice": "required",
        "text": {"format": {"type": "json_object"}, "verbosity": "low"},
        "reasoning": {"effort": "high", "summary": "auto"},
        "temperature": 0.3,
        "top_p": 0.8,
        "max_output_tokens": 500,
        "parallel_tool_calls": False,
        "store": False,
        "metadata": {"run": "1"},
        "previous_response_id": "resp_0",
        "user": "u-1",
    }
    obj = build(SCRIPTS["text"], body)
    message = obj.pop("output")
    assert obj.pop("completed_at") >= 1700000000
    assert obj == {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": "Be brief.",
        "max_output_tokens": 500,
        "model": MODEL,
        "parallel_tool_calls": False,
        "previous_response_id": "resp_0",
        "reasoning": {"effort": "high", "summary": "auto"},
        "store": False,
        "temperature": 0.3,
        "text": {"format": {"type": "json_object"}, "verbosity": "low"},
        "tool_choice": "required",
        "tools": body["tools"],
        "top_p": 0.8,
        "truncation": "disabled",
        "user": "u-1",
        "metadata": {"run": "1"},
        "usage": response_usage(USAGE),
    }
    [item] = message
    assert item["id"].startswith("msg_")
    assert len(item["id"]) == 52
    assert {key: value for key, value in item.items() if key != "id"} == {
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [
            {
                "type": "output_text",
                "text": "Hello there, how are you?",
                "annotations": [],
                "logprobs": [],
            }
        ],
    }


def test_defaults_are_echoed_as_openai_gives_them() -> None:
    obj = build(SCRIPTS["text"])
    assert (obj["tool_choice"], obj["tools"], obj["store"], obj["parallel_tool_calls"]) == (
        "auto",
        [],
        True,
        True,
    )
    assert (obj["text"], obj["metadata"], obj["instructions"]) == (
        {"format": {"type": "text"}},
        {},
        None,
    )


def test_reasoning_comes_first_as_a_summary() -> None:
    reasoning, message = build(SCRIPTS["reasoning and text"])["output"]
    assert reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [
        {"type": "summary_text", "text": "The user greets; greet back."}
    ]
    assert message["content"][0]["text"] == "Hi!"


def test_a_refusal_is_a_refusal_part() -> None:
    [message] = build(SCRIPTS["refusal"])["output"]
    assert message["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]


def test_each_tool_call_is_a_function_call_item_answerable_by_its_call_id() -> None:
    output = build(SCRIPTS["text then calls"])["output"]
    assert [item["type"] for item in output] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    first, second = output[2:]
    assert first["id"].startswith("fc_")
    assert first["id"] != second["id"]
    assert {key: first[key] for key in ("call_id", "name", "arguments", "status")} == {
        "call_id": "call_1",
        "name": "weather",
        "arguments": '{"city":"Paris"}',
        "status": "completed",
    }
    assert second["call_id"] == "call_2"


@pytest.mark.parametrize(
    ("name", "reason", "statuses"),
    [
        ("length stop", "max_output_tokens", ["incomplete"]),
        ("length stop in calls", "max_output_tokens", ["incomplete", "incomplete"]),
        ("content filter", "content_filter", ["incomplete"]),
    ],
)
def test_a_stop_short_is_incomplete_with_its_reason(
    name: str, reason: str, statuses: list[str]
) -> None:
    obj = build(SCRIPTS[name])
    assert (obj["status"], obj["incomplete_details"], obj["completed_at"]) == (
        "incomplete",
        {"reason": reason},
        None,
    )
    assert [item["status"] for item in obj["output"]] == statuses


def test_annotations_are_flat_and_logprobs_carried() -> None:
    citation = {
        "type": "url_citation",
        "url_citation": {"url": "https://x.test", "title": "X", "start_index": 0, "end_index": 2},
    }
    logprobs = {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "bytes": [72, 105],
                "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}],
            },
            {"token": "!", "logprob": -0.5, "bytes": None, "top_logprobs": []},
        ],
        "refusal": None,
    }
    message = ResponseMessage(content="Hi!", annotations=[citation])
    answer = ChatResponse(
        id="c",
        created=1,
        model=MODEL,
        choices=[Choice(message=message, logprobs=logprobs, finish_reason="stop")],
    )
    obj = response_object(answer, BODY, response_id="resp_1", created_at=1, model=MODEL)
    Response.model_validate(obj)
    [part] = obj["output"][0]["content"]
    assert part["annotations"] == [
        {
            "type": "url_citation",
            "url": "https://x.test",
            "title": "X",
            "start_index": 0,
            "end_index": 2,
        }
    ]
    assert part["logprobs"] == [
        {
            "token": "Hi",
            "logprob": -0.1,
            "bytes": [72, 105],
            "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}],
        },
        {"token": "!", "logprob": -0.5, "bytes": [33], "top_logprobs": []},
    ]


def test_an_empty_answer_is_an_empty_message() -> None:
    [message] = build(SCRIPTS["empty"])["output"]
    assert message["content"] == [
        {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    ]


# -- the event stream ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_the_sdk_assembles_from_the_stream_the_response_it_reads_whole(name: str) -> None:
    script = SCRIPTS[name]
    events, stream = stream_events(script)
    data = decoded(events)
    assert [event["type"] for event in data[:2]] == ["response.created", "response.in_progress"]
    assert data[0]["response"]["status"] == "in_progress"
    assert (data[0]["response"]["output"], data[0]["response"]["usage"]) == ([], None)
    whole = build(script)
    final = data[-1]["response"]
    assert data[-1]["type"] == f"response.{whole['status']}"
    assert final == stream.response
    assert normalised(final) == normalised(whole)

    parsed = sdk_client(json.dumps(whole).encode(), "application/json").responses.parse(
        model=MODEL, input="hi"
    )
    with sdk_client(b"".join(events), "text/event-stream").responses.stream(
        model=MODEL, input="hi"
    ) as sdk_stream:
        if whole["status"] != "completed":
            with pytest.raises(RuntimeError, match=r"response\.completed"):
                sdk_stream.get_final_response()
            return
        assembled = sdk_stream.get_final_response()
    assert normalised(assembled.model_dump(mode="json")) == normalised(
        parsed.model_dump(mode="json")
    )
    assert assembled.output_text == script.content


def test_the_event_order_is_openais() -> None:
    events, _ = stream_events(SCRIPTS["text then calls"], cut=100)
    assert [event["type"] for event in decoded(events)] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_a_refusal_streams_as_refusal_events() -> None:
    events, _ = stream_events(SCRIPTS["refusal"], cut=5)
    types = [event["type"] for event in decoded(events)]
    assert types.count("response.refusal.delta") == 5
    assert "response.refusal.done" in types
    assert "response.output_text.delta" not in types


def test_interleaved_call_fragments_land_in_their_own_items() -> None:
    stream = ResponseEventStream(BODY, response_id="resp_1", created_at=1, model=MODEL)
    events = stream.start()
    for index, call_id in ((0, "call_a"), (1, "call_b")):
        start = ToolCallDelta(index, call_id, "function", FunctionCallDelta(name="f", arguments=""))
        events += stream.feed(chunk(Delta(tool_calls=[start])))
    for index, piece in ((0, '{"x":'), (1, '{"y":'), (0, "1}"), (1, "2}")):
        events += stream.feed(
            chunk(
                Delta(
                    tool_calls=[ToolCallDelta(index, function=FunctionCallDelta(arguments=piece))]
                )
            )
        )
    events += stream.finish(None)
    accumulate(decoded(events))
    output = stream.response["output"]
    assert [(item["call_id"], item["arguments"]) for item in output] == [
        ("call_a", '{"x":1}'),
        ("call_b", '{"y":2}'),
    ]


def test_usage_given_at_the_finish_wins_and_reaches_the_last_event() -> None:
    stream = ResponseEventStream(BODY, response_id="resp_1", created_at=1, model=MODEL)
    events = stream.start()
    events += stream.feed(chunk(Delta(content="hi")))
    early = Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)
    events += stream.feed(ChatChunk(id="c", created=1, model=MODEL, usage=early))
    last = decoded(events + stream.finish(USAGE))[-1]
    assert last["response"]["usage"] == response_usage(USAGE)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UpstreamError("Upstream deepseek closed the stream mid-answer."), "server_error"),
        (RateLimited("slow down"), "rate_limit_exceeded"),
    ],
)
def test_a_failure_closes_open_items_as_incomplete_and_ends_failed(
    error: UpstreamError, code: str
) -> None:
    stream = ResponseEventStream(BODY, response_id="resp_1", created_at=1, model=MODEL)
    events = stream.start()
    events += stream.feed(chunk(Delta(reasoning_content="Thinking")))
    events += stream.feed(chunk(Delta(content="Half an ans")))
    events += stream.fail(error)
    data = decoded(events)
    last = data[-1]
    assert last["type"] == "response.failed"
    assert last["response"]["status"] == "failed"
    assert last["response"]["error"] == {"code": code, "message": error.message}
    assert [item["status"] for item in last["response"]["output"] if item["type"] == "message"] == [
        "incomplete"
    ]
    assert last["response"] == stream.response
    accumulate(data)
    # Nothing follows a terminal event.
    assert stream.feed(chunk(Delta(content="more"))) == []
    assert stream.finish(None) == []
    assert stream.fail(error) == []


def test_a_failure_before_any_output_is_a_failed_response_with_no_items() -> None:
    stream = ResponseEventStream(BODY, response_id="resp_1", created_at=1, model=MODEL)
    data = decoded(stream.fail(UpstreamError("gone")))
    assert [event["type"] for event in data] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert data[-1]["response"]["output"] == []


def test_feeding_without_start_starts_the_stream() -> None:
    stream = ResponseEventStream(BODY, response_id="resp_1", created_at=1, model=MODEL)
    data = decoded(stream.feed(chunk(Delta(content="hi"))))
    assert data[0]["type"] == "response.created"
    assert stream.start() == []


_texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    reasoning=_texts,
    content=_texts,
    args=st.lists(_texts, max_size=3),
    cut=st.integers(min_value=1, max_value=7),
    finish=st.sampled_from(["stop", "length", "tool_calls", "content_filter"]),
)
def test_any_split_of_the_deltas_gives_the_same_final_response(
    reasoning: str, content: str, args: list[str], cut: int, finish: str
) -> None:
    calls = [(f"call_{i}", f"tool_{i}", arg) for i, arg in enumerate(args)]
    script = Script(reasoning=reasoning, content=content, calls=calls, finish=finish, usage=USAGE)
    events, stream = stream_events(script, cut=cut)
    data = decoded(events)
    accumulate(data)
    assert normalised(stream.response) == normalised(build(script))


def test_streamed_logprobs_ride_on_their_deltas_and_add_up_to_the_whole() -> None:
    tokens = [
        TokenLogprob("Hel", -0.2, [72, 101, 108], [TopLogprob("Hel", -0.2, [72, 101, 108])]),
        TokenLogprob("lo", -0.1, None, []),
    ]
    stream = ResponseEventStream(BODY, response_id="resp_1", created_at=1, model=MODEL)
    events = stream.start()
    for token in tokens:
        logprobs = ChoiceLogprobs(content=[token])
        piece = ChunkChoice(delta=Delta(content=token.token), logprobs=logprobs)
        events += stream.feed(ChatChunk(id="c", created=1, model=MODEL, choices=[piece]))
    events += stream.finish(None)
    data = decoded(events)
    deltas = [event["logprobs"] for event in data if event["type"] == "response.output_text.delta"]
    assert [[entry["token"] for entry in delta] for delta in deltas] == [["Hel"], ["lo"]]
    message = ResponseMessage(content="Hello")
    choice = Choice(message=message, logprobs=ChoiceLogprobs(content=tokens), finish_reason="stop")
    whole = response_object(
        ChatResponse(id="c", created=1, model=MODEL, choices=[choice]),
        BODY,
        response_id="resp_1",
        created_at=1,
        model=MODEL,
    )
    assert normalised(stream.response) == normalised(whole)
    assert whole["output"][0]["content"][0]["logprobs"][1]["bytes"] == [108, 111]


@pytest.mark.parametrize(
    "logprobs",
    [
        ["not", "an", "object"],
        {"content": "nope"},
        {"content": [None, {"token": "a"}, {"logprob": -1}, {"token": 3, "logprob": -1}]},
        {"content": [{"token": "a", "logprob": "low", "top_logprobs": "x"}]},
        {"content": [{"token": "a", "logprob": -1, "top_logprobs": [None, {"token": "b"}]}]},
    ],
)
def test_logprobs_an_upstream_garbled_are_left_out_not_a_crash(logprobs: object) -> None:
    good = {"token": "a", "logprob": -1, "bytes": [97], "top_logprobs": []}
    found = output_logprobs(logprobs)
    assert found in ([], [good])


_deltas = st.one_of(
    st.builds(lambda text: Delta(content=text), _texts),
    st.builds(lambda text: Delta(reasoning_content=text), _texts),
    st.builds(lambda text: Delta(refusal=text), _texts),
    st.builds(
        lambda index, call_id, name, args: Delta(
            tool_calls=[
                ToolCallDelta(index, call_id, None, FunctionCallDelta(name=name, arguments=args))
            ]
        ),
        st.integers(0, 2),
        st.none() | st.sampled_from(["call_a", "call_b"]),
        st.none() | st.sampled_from(["f", "g"]),
        st.none() | _texts,
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    deltas=st.lists(_deltas, max_size=12),
    finish=st.none() | st.sampled_from(["stop", "length", "tool_calls", "content_filter"]),
    failed=st.booleans(),
)
def test_any_chunk_order_gives_events_the_sdk_accepts(
    deltas: list[Delta], finish: str | None, failed: bool
) -> None:
    stream = ResponseEventStream(BODY, response_id="resp_1", created_at=1, model=MODEL)
    events = stream.start()
    for delta in deltas:
        events += stream.feed(chunk(delta))
    events += stream.feed(
        ChatChunk(id="c", created=1, model=MODEL, choices=[ChunkChoice(finish_reason=finish)])
    )
    events += stream.fail(UpstreamError("cut")) if failed else stream.finish(USAGE)
    data = decoded(events)
    state = accumulate(data)
    assert data[-1]["response"] == stream.response
    ended = data[-1]["type"]
    if ended == "response.completed":
        assert state._completed_response is not None
    assert all(
        item["status"] != "in_progress" for item in stream.response["output"] if "status" in item
    )
    added = [event["item"]["id"] for event in data if event["type"] == "response.output_item.added"]
    done = [event["item"]["id"] for event in data if event["type"] == "response.output_item.done"]
    assert sorted(added) == sorted(done)
    assert [item["id"] for item in stream.response["output"]] == added


def test_a_call_id_an_upstream_repeats_is_made_unique() -> None:
    # The SDK refuses a stream with two calls of one call_id, and so would the next turn's answers.
    script = Script(
        calls=[("call_1", "f", "{}"), ("call_1", "g", "{}"), ("", "h", "{}")], finish="tool_calls"
    )
    events, stream = stream_events(script)
    accumulate(decoded(events))
    for output in (stream.response["output"], build(script)["output"]):
        ids = [item["call_id"] for item in output]
        assert ids[0] == "call_1"
        assert len(set(ids)) == 3
        assert all(call_id.startswith("call_") for call_id in ids)
