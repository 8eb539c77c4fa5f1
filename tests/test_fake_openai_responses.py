"""Tests of the fake OpenAI's Responses API, checked with the official openai SDK and raw httpx."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import openai
import pytest
import trio
from openai.types.responses import Response, ResponseInputParam

from tests.fakes.openai_responses import (
    CustomToolCall,
    CutMidStream,
    FailMidStream,
    FunctionCall,
    FunctionCalls,
    TextAnswer,
    WebSearchAnswer,
    length_stop,
    responses_event_stream,
)
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.openai_wire import ErrorReply, rate_limited, server_error
from tests.fakes.responses_events import NOVEL_FIELD, NOVEL_VALUE, parse_event_stream
from tests.fakes.text import expected_logprobs

KEY = "sk-upstream-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}
DELTA_EVENTS = {
    "response.output_text.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta",
    "response.custom_tool_call_input.delta",
}


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeOpenAI:
    """A running fake; the pytest-trio nursery cancels it at the end of the test."""
    upstream = FakeOpenAI(api_key=KEY)
    await nursery.start(upstream.run)
    return upstream


@pytest.fixture
async def http(fake: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    """A raw httpx client pointed at the fake."""
    async with httpx.AsyncClient(base_url=fake.base_url, headers=AUTH, timeout=5.0) as client:
        yield client


@pytest.fixture
async def sdk(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official openai SDK pointed at the fake."""
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=5.0)
    try:
        yield client
    finally:
        await client.close()


async def stream_raw(http: httpx.AsyncClient, body: dict[str, Any]) -> bytes:
    """POST a streamed create and return the whole SSE body."""
    async with http.stream("POST", "/responses", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["x-request-id"].startswith("req_")
        return await response.aread()


async def read_into(response: httpx.Response, chunks: list[bytes]) -> None:
    """Read the body into `chunks` (what arrived is kept if reading fails part way)."""
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)


def without_ids(value: Any) -> Any:
    """The value with what differs between two runs of one answer blanked: ids, times, blobs."""
    if isinstance(value, dict):
        volatile = {"id", "call_id", "created_at", "completed_at", "encrypted_content"}
        return {k: "*" if k in volatile else without_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def dumped(response: Response) -> dict[str, Any]:
    """A response as JSON data (what the SDK parsed, extra fields included), without the
    `parsed` and `parsed_arguments` the SDK's stream helper adds to text parts and calls."""
    data: dict[str, Any] = response.model_dump(mode="json", exclude_unset=True)
    for item in data["output"]:
        item.pop("parsed_arguments", None)
        for part in item.get("content") or []:
            part.pop("parsed", None)
    return data


async def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll until `predicate` holds (the server sees a disconnect shortly after the client)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


# -- create, not streamed ---------------------------------------------------------------------


async def test_sdk_create_plain(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    response = await sdk.responses.create(model="gpt-4o-mini", input="hello there")
    assert response.output_text == "echo: hello there"
    assert response.status == "completed"
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.model == "gpt-4o-mini"
    assert response.completed_at is not None
    [message] = response.output
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert (message.role, message.status) == ("assistant", "completed")
    assert response.usage is not None
    assert response.usage.model_dump() == {
        "input_tokens": 2,
        "input_tokens_details": {
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "cache_write_tokens_details": None,
        },
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 5,
    }
    sent = fake.sent[-1]
    assert sent.status == 200
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-request-id"].startswith("req_")


async def test_response_echoes_the_request_settings(http: httpx.AsyncClient) -> None:
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}
    body = {
        "model": "o3-mini",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "one two"}]}],
        "instructions": "Be terse.",
        "tools": [tool],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "max_output_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_object"}},
        "metadata": {"k": "v"},
        "store": False,
        "user": "u-1",
    }
    answer = (await http.post("/responses", json=body)).json()
    for name in ("instructions", "tools", "tool_choice", "max_output_tokens", "metadata", "user"):
        assert answer[name] == body[name], name
    assert answer["parallel_tool_calls"] is False
    assert (answer["temperature"], answer["top_p"]) == (0.5, 0.9)
    assert answer["reasoning"] == {"effort": "low", "summary": "auto"}
    assert answer["text"] == {"format": {"type": "json_object"}, "verbosity": "medium"}
    assert answer["store"] is False
    assert answer["previous_response_id"] is None
    assert answer["usage"]["input_tokens"] == 4  # two input words and two instruction words


async def test_usage_details_cached_and_reasoning(
    sdk: openai.AsyncOpenAI, fake: FakeOpenAI
) -> None:
    fake.responses.enqueue(
        TextAnswer(text="Fine.", reasoning="Think it through.", reasoning_tokens=7, cached_tokens=1)
    )
    response = await sdk.responses.create(model="o3-mini", input="how are you")
    assert response.usage is not None
    assert response.usage.input_tokens_details.cached_tokens == 1
    assert response.usage.output_tokens_details.reasoning_tokens == 7
    assert response.usage.output_tokens == 8  # one word and the reasoning tokens
    assert response.usage.total_tokens == 11
    reasoning, message = response.output
    assert reasoning.type == "reasoning"
    assert reasoning.id.startswith("rs_")
    assert [part.text for part in reasoning.summary] == ["Think it through."]
    assert reasoning.encrypted_content is None  # not asked for
    assert message.type == "message"
    assert response.output_text == "Fine."


# -- streaming --------------------------------------------------------------------------------


async def test_stream_exact_event_sequence(http: httpx.AsyncClient) -> None:
    events = parse_event_stream(await stream_raw(http, {"model": "gpt-4o", "input": "hello there"}))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    created = events[0]["response"]
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    assert {e["response"]["id"] for e in (events[0], events[1], events[-1])} == {created["id"]}
    item_id = events[2]["item"]["id"]
    assert events[2]["item"] == {
        "id": item_id,
        "type": "message",
        "status": "in_progress",
        "content": [],
        "role": "assistant",
    }
    assert [e["delta"] for e in events[4:7]] == ["echo:", " hello", " there"]
    for event in events[3:9]:
        assert (event["item_id"], event["output_index"]) == (item_id, 0)
    assert events[7]["text"] == "echo: hello there"
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": "echo: hello there"}
    assert events[8]["part"] == part
    assert events[9]["item"] == {
        "id": item_id,
        "type": "message",
        "status": "completed",
        "content": [part],
        "role": "assistant",
    }
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert final["output"] == [events[9]["item"]]
    assert final["usage"]["total_tokens"] == 5


async def test_obfuscation_on_deltas_unless_turned_off(
    http: httpx.AsyncClient, fake: FakeOpenAI
) -> None:
    fake.responses.enqueue(
        FunctionCalls(calls=(FunctionCall(), CustomToolCall()), reasoning="Look it up.")
    )
    body = {"model": "o3-mini", "input": "weather?"}
    events = parse_event_stream(await stream_raw(http, body))
    assert {e["type"] for e in events} >= DELTA_EVENTS - {"response.output_text.delta"}
    for event in events:
        assert ("obfuscation" in event) == (event["type"] in DELTA_EVENTS), event["type"]
        if "obfuscation" in event:
            assert re.fullmatch(r"[A-Za-z0-9_-]+", event["obfuscation"])

    off = {**body, "stream_options": {"include_obfuscation": False}}
    events = parse_event_stream(await stream_raw(http, off))
    assert not [e for e in events if "obfuscation" in e]


async def test_sdk_streamed_create(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.responses.create(model="gpt-4o", input="hello there", stream=True)
    kinds, text = [], ""
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            assert event.response.output_text == "echo: hello there"
    assert text == "echo: hello there"
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"


@pytest.mark.parametrize(
    "answer",
    [
        TextAnswer(text="The sky is blue.", reasoning="Rayleigh scattering.", cached_tokens=2),
        FunctionCalls(calls=(FunctionCall(), FunctionCall("get_time", '{"tz":"CET"}', 2))),
        WebSearchAnswer(),
        TextAnswer(novel_fields=True),
        FunctionCalls(calls=(CustomToolCall(), FunctionCall()), novel_fields=True),
    ],
    ids=["reasoning-text", "function-calls", "web-search", "novel-fields", "custom-tool"],
)
async def test_stream_helper_final_equals_non_streamed(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI, answer: Any
) -> None:
    fake.responses.enqueue(answer, answer)
    include: list[Any] = ["reasoning.encrypted_content"]
    plain = await sdk.responses.create(model="o3-mini", input="why?", include=include)
    async with sdk.responses.stream(model="o3-mini", input="why?", include=include) as stream:
        async for _ in stream:
            pass
        streamed = await stream.get_final_response()
    assert without_ids(dumped(streamed)) == without_ids(dumped(plain))
    assert streamed.output_text == plain.output_text


# -- tools ------------------------------------------------------------------------------------


async def test_function_calls_over_two_turns(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    tools: list[Any] = [
        {"type": "function", "name": "get_weather", "parameters": None, "strict": False},
        {"type": "function", "name": "get_time", "parameters": None, "strict": False},
    ]
    calls = (FunctionCall(), FunctionCall("get_time", '{"tz":"CET"}'))
    fake.responses.enqueue(FunctionCalls(calls=calls))
    first = await sdk.responses.create(model="gpt-4o", input="weather and time?", tools=tools)
    assert first.output_text == ""
    assert [item.type for item in first.output] == ["function_call", "function_call"]
    made = [item for item in first.output if item.type == "function_call"]
    assert [(c.name, c.arguments) for c in made] == [
        ("get_weather", '{"city":"Paris"}'),
        ("get_time", '{"tz":"CET"}'),
    ]
    for call in made:
        assert call.id is not None
        assert call.id.startswith("fc_")
        assert call.call_id.startswith("call_")
        assert call.status == "completed"

    # Second turn, continued server-side: only the outputs, answered by call_id.
    outputs: ResponseInputParam = [
        {"type": "function_call_output", "call_id": made[0].call_id, "output": "sunny"},
        {"type": "function_call_output", "call_id": made[1].call_id, "output": "noon"},
    ]
    second = await sdk.responses.create(
        model="gpt-4o", input=outputs, previous_response_id=first.id, tools=tools
    )
    assert second.output_text == "echo: noon"
    assert second.previous_response_id == first.id
    assert len(fake.responses.inputs[-1]) == 5  # user message, two calls, two outputs

    # The item id is not the call id: answering by it is OpenAI's 400.
    wrong: ResponseInputParam = [
        {"type": "function_call_output", "call_id": str(made[0].id), "output": "sunny"}
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.responses.create(model="gpt-4o", input=wrong, previous_response_id=first.id)
    assert caught.value.body == {
        "message": f"No tool call found for function call output with call_id {made[0].id}.",
        "type": "invalid_request_error",
        "param": "input",
        "code": None,
    }


async def test_function_calls_streamed(http: httpx.AsyncClient, fake: FakeOpenAI) -> None:
    fake.responses.enqueue(
        FunctionCalls(calls=(FunctionCall(fragments=3), FunctionCall("b", "{}")))
    )
    events = parse_event_stream(await stream_raw(http, {"model": "gpt-4o", "input": "go"}))
    first = [e for e in events if e.get("output_index") == 0]
    assert [e["type"] for e in first] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    added = first[0]["item"]
    assert added["status"] == "in_progress"
    assert added["arguments"] == ""
    assert added["id"].startswith("fc_")
    assert added["call_id"].startswith("call_")
    assert "".join(e["delta"] for e in first[1:4]) == '{"city":"Paris"}'
    assert first[4] == {
        "type": "response.function_call_arguments.done",
        "sequence_number": first[4]["sequence_number"],
        "item_id": added["id"],
        "output_index": 0,
        "arguments": '{"city":"Paris"}',
    }
    assert first[5]["item"] == {**added, "status": "completed", "arguments": '{"city":"Paris"}'}
    assert [e["item"]["name"] for e in events if e["type"] == "response.output_item.done"] == [
        "get_weather",
        "b",
    ]


async def test_stateless_turns_like_codex(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    """store false, the whole input each turn, reasoning items sent back with their blob."""
    fake.responses.enqueue(FunctionCalls(reasoning="Need the weather."))
    include: list[Any] = ["reasoning.encrypted_content"]
    history: list[Any] = [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    first = await sdk.responses.create(
        model="o3-mini", input=history, store=False, include=include, stream=False
    )
    reasoning, call = first.output
    assert reasoning.type == "reasoning"
    assert call.type == "function_call"
    blob = reasoning.encrypted_content
    assert blob is not None
    assert blob.startswith("gAAAAAB")
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "rain"})
    second = await sdk.responses.create(
        model="o3-mini", input=history, store=False, include=include
    )
    assert second.output_text == "echo: rain"
    assert fake.responses.encrypted_returned == [blob]
    assert fake.responses.stored == {}

    # A blob the fake never issued (or one altered on the way) is refused, as OpenAI does.
    history[1]["encrypted_content"] = blob[:-4] + "AAAA"
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.responses.create(model="o3-mini", input=history, store=False)
    assert caught.value.code == "invalid_encrypted_content"


async def test_encrypted_content_is_taken_from_output_item_done(
    http: httpx.AsyncClient, fake: FakeOpenAI
) -> None:
    fake.responses.enqueue(TextAnswer(reasoning="Hmm."))
    body = {"model": "o3-mini", "input": "hi", "include": ["reasoning.encrypted_content"]}
    events = parse_event_stream(await stream_raw(http, body))
    added = next(e for e in events if e["type"] == "response.output_item.added")
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert added["item"] == {"id": added["item"]["id"], "type": "reasoning", "summary": []}
    assert done["item"]["encrypted_content"].startswith("gAAAAAB")
    assert done["item"]["summary"] == [{"type": "summary_text", "text": "Hmm."}]
    assert events[-1]["response"]["output"][0] == done["item"]


async def test_web_search_call_and_citation(http: httpx.AsyncClient, fake: FakeOpenAI) -> None:
    answer = WebSearchAnswer()
    fake.responses.enqueue(answer)
    body = {
        "model": "gpt-4o",
        "input": "weather in Paris?",
        "tools": [{"type": "web_search"}],
        "include": ["web_search_call.action.sources"],
    }
    events = parse_event_stream(await stream_raw(http, body))
    kinds = [e["type"] for e in events]
    assert kinds[2:7] == [
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
    ]
    assert "response.output_text.annotation.added" in kinds
    search, message = events[-1]["response"]["output"]
    assert search["id"].startswith("ws_")
    assert search["status"] == "completed"
    assert search["action"] == {
        "type": "search",
        "query": answer.query,
        "sources": [{"type": "url", "url": answer.url}],
    }
    [part] = message["content"]
    assert part["text"] == answer.text
    assert part["annotations"] == [
        {
            "type": "url_citation",
            "start_index": 0,
            "end_index": len(answer.text),
            "title": answer.title,
            "url": answer.url,
        }
    ]
    assert events[-1]["response"]["tools"] == [{"type": "web_search"}]


# -- stored responses -------------------------------------------------------------------------


async def test_previous_response_id_prepends_stored_items(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI
) -> None:
    fake.responses.enqueue(TextAnswer(count_items=True), TextAnswer(count_items=True))
    first = await sdk.responses.create(model="gpt-4o", input="one", instructions="Be brief.")
    assert first.output_text == "echo: one (1 input items)"
    second = await sdk.responses.create(model="gpt-4o", input="two", previous_response_id=first.id)
    # The first input, the first answer, the new input; the instructions are not carried over.
    assert second.output_text == "echo: two (3 input items)"
    assert second.instructions is None
    assert second.usage is not None
    assert second.usage.input_tokens == 1 + 5 + 1  # "one", "echo: one (1 input items)", "two"
    assert fake.responses.inputs[-1][1] == dumped(first)["output"][0]


async def test_retrieve_and_delete(sdk: openai.AsyncOpenAI) -> None:
    created = await sdk.responses.create(model="gpt-4o", input="keep me")
    retrieved = await sdk.responses.retrieve(created.id)
    assert dumped(retrieved) == dumped(created)

    await sdk.responses.delete(created.id)  # the SDK discards the body
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.responses.retrieve(created.id)
    assert caught.value.body == {
        "message": f"Response with id '{created.id}' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.delete(created.id)


async def test_delete_answers_the_deleted_object(http: httpx.AsyncClient) -> None:
    created = (await http.post("/responses", json={"model": "gpt-4o", "input": "x"})).json()
    response = await http.delete(f"/responses/{created['id']}")
    assert response.json() == {"id": created["id"], "object": "response", "deleted": True}


async def test_store_false_keeps_nothing(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    response = await sdk.responses.create(model="gpt-4o", input="forget me", store=False)
    assert dumped(response)["store"] is False  # not among the SDK's fields, kept as an extra
    assert fake.responses.stored == {}
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.responses.create(model="gpt-4o", input="and?", previous_response_id=response.id)
    assert caught.value.body == {
        "message": f"Previous response with id '{response.id}' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }


async def test_streamed_response_is_stored(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    async with sdk.responses.stream(model="gpt-4o", input="stream me") as stream:
        final = await stream.get_final_response()
    assert dumped(await sdk.responses.retrieve(final.id)) == dumped(final)


# -- ends other than completed ----------------------------------------------------------------


async def test_length_stop_is_incomplete(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    fake.responses.enqueue(length_stop("cut short"), length_stop("cut short"))
    response = await sdk.responses.create(model="gpt-4o", input="long", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].type == "message"
    assert response.output[0].status == "incomplete"
    assert response.output_text == "cut short"

    events = parse_event_stream(await stream_raw(http, {"model": "gpt-4o", "input": "long"}))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert not [e for e in events if e["type"] == "response.completed"]


async def test_failed_mid_stream(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    fake.responses.enqueue(FailMidStream(after_events=5, code="rate_limit_exceeded", message="x"))
    events = parse_event_stream(await stream_raw(http, {"model": "gpt-4o", "input": "hello there"}))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.failed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(6))
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "rate_limit_exceeded", "message": "x"}
    assert failed["id"] == events[0]["response"]["id"]

    fake.responses.enqueue(FailMidStream())
    stream = await sdk.responses.create(model="gpt-4o", input="hi", stream=True)
    kinds = [event.type async for event in stream]
    assert kinds[-1] == "response.failed"

    fake.responses.enqueue(FailMidStream())
    with pytest.raises(openai.InternalServerError):
        await sdk.responses.create(model="gpt-4o", input="hi")


async def test_cut_stream_has_no_terminal_event(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    fake.responses.enqueue(CutMidStream(after_events=4))
    chunks: list[bytes] = []
    body = {"model": "gpt-4o", "input": "hello there", "stream": True}
    async with http.stream("POST", "/responses", json=body) as response:
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            await read_into(response, chunks)
    events = parse_event_stream(b"".join(chunks))
    assert [e["sequence_number"] for e in events] == [0, 1, 2, 3]
    assert fake.disconnects == 0  # the server cut it, the client did not leave
    assert fake.responses.stored == {}

    fake.responses.enqueue(CutMidStream())
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        await http.post("/responses", json={"model": "gpt-4o", "input": "x"})
    assert (await http.post("/responses", json={"model": "gpt-4o", "input": "x"})).is_success


async def test_client_leaving_mid_stream_is_counted(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    fake.responses.enqueue(TextAnswer(text="a b c d e f g h", interval_s=0.05))
    body = {"model": "gpt-4o", "input": "x", "stream": True}
    async with http.stream("POST", "/responses", json=body) as response:
        async for line in response.aiter_lines():
            if '"delta":"a"' in line:
                break  # leaving the block closes the connection mid-stream
    await wait_for(lambda: fake.disconnects == 1)


# -- errors -----------------------------------------------------------------------------------


async def test_errors_as_sdk_exceptions(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        await sdk.responses.create(model="gpt-4o", input="x", extra_body={"bogus": 1})
    assert bad.value.body == {
        "message": "Unknown parameter: 'bogus'.",
        "type": "invalid_request_error",
        "param": "bogus",
        "code": "unknown_parameter",
    }

    with pytest.raises(openai.BadRequestError) as unknown_model:
        await sdk.responses.create(model="does-not-exist", input="x")
    assert unknown_model.value.code == "model_not_found"

    wrong_key = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-wrong-0123", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        await wrong_key.responses.create(model="gpt-4o", input="x")
    assert auth.value.code == "invalid_api_key"
    await wrong_key.close()

    fake.responses.enqueue(rate_limited("7"), server_error(), ErrorReply(503))
    with pytest.raises(openai.RateLimitError) as limited:
        await sdk.responses.create(model="gpt-4o", input="x")
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError) as failed:
        await sdk.responses.create(model="gpt-4o", input="x")
    assert failed.value.status_code == 500
    with pytest.raises(openai.InternalServerError) as unavailable:
        await sdk.responses.create(model="gpt-4o", input="x", stream=True)
    assert unavailable.value.status_code == 503


async def test_bad_bodies_are_400s_naming_the_problem(http: httpx.AsyncClient) -> None:
    cases: list[tuple[Any, str | None, str | None]] = [
        ({"input": "x"}, "model", "missing_required_parameter"),
        ({"model": "gpt-4o", "input": 5}, "input", "invalid_type"),
        (
            {"model": "gpt-4o", "previous_response_id": "resp_1", "conversation": "conv_1"},
            None,
            "mutually_exclusive_parameters",
        ),
        ({"model": "gpt-4o", "previous_response_id": "resp_nope"}, "previous_response_id", None),
    ]
    for body, param, code in cases:
        response = await http.post("/responses", json=body)
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param
        if code is not None:
            assert error["code"] == code
    response = await http.post("/responses", content=b"{not json")
    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]
    assert (await http.get("/responses/resp_1/input_items/x")).status_code == 404


# -- bytes ------------------------------------------------------------------------------------


async def test_novel_fields_everywhere(http: httpx.AsyncClient, fake: FakeOpenAI) -> None:
    fake.responses.enqueue(TextAnswer(novel_fields=True), TextAnswer(novel_fields=True))
    answer = (await http.post("/responses", json={"model": "gpt-4o", "input": "x"})).json()
    assert answer[NOVEL_FIELD] == NOVEL_VALUE
    assert answer["output"][0][NOVEL_FIELD] == NOVEL_VALUE
    assert answer["output"][0]["content"][0][NOVEL_FIELD] == NOVEL_VALUE

    events = parse_event_stream(await stream_raw(http, {"model": "gpt-4o", "input": "x"}))
    assert all(event[NOVEL_FIELD] == NOVEL_VALUE for event in events)
    assert events[-1]["response"][NOVEL_FIELD] == NOVEL_VALUE


async def test_requests_and_answers_are_recorded_as_bytes(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    body = b'{"model":"gpt-4o","input":"hi","x_unknown":null}'
    response = await http.post("/responses", content=body)
    assert response.status_code == 400  # OpenAI refuses unknown parameters
    assert fake.received[-1].raw == body
    assert fake.received[-1].path == "/v1/responses"
    assert fake.sent[-1].body == response.content

    raw = await stream_raw(http, {"model": "gpt-4o", "input": "hi"})
    assert fake.sent[-1].body == raw
    assert [msgspec.json.decode(d) for d in fake.sent[-1].event_data()] == parse_event_stream(raw)


async def test_raw_event_stream_for_hostile_cases(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    created = {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1"}}
    garbage = b"event: response.output_text.delta\ndata: {not json\n\n"
    fake.responses.enqueue(responses_event_stream(created, garbage))
    raw = await stream_raw(http, {"model": "gpt-4o", "input": "hi"})
    assert raw == (
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
        b'"response":{"id":"resp_1"}}\n\n' + garbage
    )


async def test_one_fake_serves_chat_and_responses(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI
) -> None:
    fake.enqueue(ErrorReply(500))  # a chat behaviour is not used by the Responses API
    response = await sdk.responses.create(model="gpt-4o", input="hello")
    assert response.output_text == "echo: hello"
    with pytest.raises(openai.InternalServerError):
        await sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    completion = await sdk.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}]
    )
    assert completion.choices[0].message.content == "echo: x"


async def test_unknown_include_and_unmodelled_features_are_refused(http: httpx.AsyncClient) -> None:
    body = {"model": "gpt-4o", "input": "x", "include": ["reasoning.encrypted_content", "bogus"]}
    error = (await http.post("/responses", json=body)).json()["error"]
    assert (error["param"], error["code"]) == ("include[1]", "invalid_value")
    assert error["message"].startswith("Invalid value: 'bogus'. Supported values are: ")

    # What the fake does not model it refuses, naming it, rather than pretend.
    for name, value in [("background", True), ("conversation", "conv_1"), ("prompt", {"id": "p"})]:
        response = await http.post("/responses", json={"model": "gpt-4o", name: value})
        assert response.status_code == 400
        error = response.json()["error"]
        assert (error["param"], error["code"]) == (name, "unsupported_parameter")
        assert "not modelled" in error["message"]


async def test_error_event_mid_stream(
    fake: FakeOpenAI, http: httpx.AsyncClient, sdk: openai.AsyncOpenAI
) -> None:
    fake.responses.enqueue(FailMidStream(after_events=3, error_event=True, code="boom"))
    events = parse_event_stream(await stream_raw(http, {"model": "gpt-4o", "input": "x"}))
    assert [e["type"] for e in events][-2:] == ["response.output_item.added", "error"]
    assert events[-1] == {
        "type": "error",
        "sequence_number": 3,
        "code": "boom",
        "message": FailMidStream().message,
        "param": None,
    }

    # The SDK raises only for an `error` event whose data nests an "error" object; this flat
    # shape (the reference's and the SDK type's) arrives as an event.
    fake.responses.enqueue(FailMidStream(after_events=3, error_event=True, code="boom"))
    stream = await sdk.responses.create(model="gpt-4o", input="x", stream=True)
    last = [event async for event in stream][-1]
    assert last.type == "error"
    assert last.code == "boom"


async def test_failure_after_every_event_still_ends_failed(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    fake.responses.enqueue(FailMidStream(after_events=1000))
    events = parse_event_stream(await stream_raw(http, {"model": "gpt-4o", "input": "x"}))
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "response.failed"
    assert "response.completed" not in kinds
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    # Every item finished before the failure is in the failed response.
    assert events[-1]["response"]["output"] == [events[-2]["item"]]


async def test_only_blobs_the_client_sends_back_are_counted(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI
) -> None:
    fake.responses.enqueue(TextAnswer(reasoning="Hmm."))
    include: list[Any] = ["reasoning.encrypted_content"]
    first = await sdk.responses.create(model="o3-mini", input="x", include=include)
    await sdk.responses.create(model="o3-mini", input="y", previous_response_id=first.id)
    assert fake.responses.encrypted_returned == []  # the stored copy is the fake's own


async def test_custom_tool_call_like_codex_apply_patch(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"
    fake.responses.enqueue(FunctionCalls(calls=(CustomToolCall(input=patch, fragments=2),)))
    events = parse_event_stream(await stream_raw(http, {"model": "gpt-5", "input": "add a.txt"}))
    assert [e["type"] for e in events][2:7] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
    ]
    assert all("obfuscation" in e for e in events[3:5])
    assert "".join(e["delta"] for e in events[3:5]) == patch
    assert events[5]["input"] == patch
    item = events[6]["item"]
    assert item["type"] == "custom_tool_call"
    assert item["id"].startswith("ctc_")
    assert item["call_id"].startswith("call_")
    assert (item["name"], item["input"], item["status"]) == ("apply_patch", patch, "completed")

    # The next turn answers it by call_id with a custom_tool_call_output.
    answer: ResponseInputParam = [
        {"type": "custom_tool_call_output", "call_id": item["call_id"], "output": "Done!"}
    ]
    previous = events[-1]["response"]["id"]
    second = await sdk.responses.create(model="gpt-5", input=answer, previous_response_id=previous)
    assert second.output_text == "echo: Done!"


async def test_hold_keeps_creates_in_flight(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    fake.hold = trio.Event()
    answers: list[str] = []

    async def create() -> None:
        answers.append((await sdk.responses.create(model="gpt-4o", input="wait")).output_text)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(create)
        await wait_for(lambda: len(fake.received) == 1)
        await trio.sleep(0.05)
        assert answers == []  # recorded, not answered
        fake.hold.set()
    assert answers == ["echo: wait"]


async def test_slow_answer_times_out_and_counts_the_disconnect(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    fake.responses.enqueue(TextAnswer(delay_s=5.0))
    body = {"model": "gpt-4o", "input": "x"}
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/responses", json=body, timeout=httpx.Timeout(5.0, read=0.2))
    await wait_for(lambda: fake.disconnects == 1)
    assert fake.responses.stored == {}  # never answered, never stored


async def test_cut_after_every_event_still_has_no_terminal_event(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    fake.responses.enqueue(CutMidStream(after_events=1000))
    chunks: list[bytes] = []
    body = {"model": "gpt-4o", "input": "x", "stream": True}
    async with http.stream("POST", "/responses", json=body) as response:
        with pytest.raises(httpx.RemoteProtocolError):
            await read_into(response, chunks)
    kinds = [e["type"] for e in parse_event_stream(b"".join(chunks))]
    assert kinds[-1] == "response.output_item.done"


@pytest.mark.parametrize("ending", [length_stop(), FailMidStream()], ids=["incomplete", "failed"])
async def test_stream_helper_has_no_final_response_without_completed(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI, ending: Any
) -> None:
    """The SDK's stream() accepts every event of an incomplete or failed stream, and then, as
    the reference says, refuses to give a final response."""
    fake.responses.enqueue(ending)
    async with sdk.responses.stream(model="gpt-4o", input="hi") as stream:
        kinds = [event.type async for event in stream]
        assert kinds[-1] in ("response.incomplete", "response.failed")
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            await stream.get_final_response()


async def test_logprobs_when_included(http: httpx.AsyncClient) -> None:
    body = {
        "model": "gpt-4o",
        "input": "hello there",
        "include": ["message.output_text.logprobs"],
        "top_logprobs": 2,
    }
    tokens = ["echo:", " hello", " there"]
    everything = expected_logprobs(tokens, 0, 2)
    events = parse_event_stream(await stream_raw(http, body))
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [e["logprobs"] for e in deltas] == [[entry] for entry in everything]
    [done] = [e for e in events if e["type"] == "response.output_text.done"]
    assert done["logprobs"] == everything
    assert events[-1]["response"]["output"][0]["content"][0]["logprobs"] == everything
    assert everything[1]["top_logprobs"][1] == {
        "token": "alt1",
        "logprob": -1.125,
        "bytes": list(b"alt1"),
    }

    answer = (await http.post("/responses", json=body)).json()
    assert answer["output"][0]["content"][0]["logprobs"] == everything


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'data: {"type":"response.created","sequence_number":0}\n\n', "event: line"),
        (b'event: response.created\ndata: {"type":"x","sequence_number":0}\n\n', "repeat"),
        (b'event: x\ndata: {"type":"x","sequence_number":1}\n\n', "sequence_number 1"),
        (b'event: x\ndata: {"type":"x","sequence_number":0}\n\ndata: [DONE]\n\n', "[DONE]"),
        (b'event: x\ndata: {"type":"x","sequence_number":0}\n', "whole event"),
        (b"event: x\ndata: {nope\n\n", "JSON"),
    ],
    ids=["no-event-line", "type-differs", "numbering", "done", "partial", "bad-json"],
)
def test_event_stream_parser_names_each_framing_break(raw: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_event_stream(raw)
