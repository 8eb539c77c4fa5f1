"""Issue 15, end to end: the official SDK's ``client.responses`` through the gateway.

OpenAI (and xAI) serve the Responses API: calls to them pass through byte-faithful. Gemini does
not: calls to it are translated through the chat path and its answers built into responses and
the real event sequence. Both kinds are stored for ``previous_response_id`` and ``GET``, each
visible only to its own client, and a conversation started on one provider continues on another.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway, http, logged, on_each_backend, sdk
from tests.fakes.gemini_upstream import DEFAULT_API_KEY as GEMINI_KEY
from tests.fakes.gemini_upstream import CutStream as GeminiCut
from tests.fakes.gemini_upstream import Echo as GeminiEcho
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.gemini_upstream import FunctionCall as GeminiCall
from tests.fakes.gemini_upstream import Thinking as GeminiThinking
from tests.fakes.openai_responses import (
    CutMidStream,
    FailMidStream,
    FunctionCall,
    FunctionCalls,
    TextAnswer,
    WebSearchAnswer,
)
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI
from tests.fakes.openai_upstream import Echo as ChatEcho
from tests.fakes.openai_upstream import ToolCalls as ChatToolCalls
from tests.fakes.openai_wire import server_error

OPENAI = "gpt-4o"
GEMINI = "gemini-2.5-flash"
DEEPSEEK = "deepseek-chat"
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
# A 1x1 PNG as a data URL: an image every provider takes inline.
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
COUNT_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
async def gateway(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_gemini: FakeGemini
) -> RunningService:
    """The gateway with openai (passed through), gemini and deepseek (translated) at fakes."""
    return await start_gateway(
        {
            "providers": {
                "openai": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY},
                # DeepSeek speaks chat only: the same fake's chat endpoint plays it.
                "deepseek": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY},
                "gemini": {"base_url": fake_gemini.base_url, "api_key": GEMINI_KEY},
                "ollama": {"enabled": False},
            }
        }
    )


async def post(gateway: RunningService, body: dict[str, Any]) -> httpx.Response:
    """One call sent raw, bounded in time."""
    async with http(gateway) as client:
        with trio.fail_after(10):
            return await client.post("/v1/responses", json=body, headers=AUTH)


def events_of(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Each SSE event of a body: its ``event:`` name and its decoded data."""
    found: list[tuple[str, dict[str, Any]]] = []
    for block in body.split(b"\n\n"):
        if not block.strip():
            continue
        lines = block.split(b"\n")
        name = next(ln[7:].decode() for ln in lines if ln.startswith(b"event: "))
        data = next(ln[6:] for ln in lines if ln.startswith(b"data: "))
        found.append((name, json.loads(data)))
    return found


# -- passed through ------------------------------------------------------------------------------


async def test_a_plain_call_to_openai_comes_back_as_openai_sent_it(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.enqueue(WebSearchAnswer(novel_fields=True))
    reply = await post(
        gateway, {"model": OPENAI, "input": "weather?", "tools": [{"type": "web_search"}]}
    )
    assert reply.status_code == 200
    assert reply.content == fake_openai.sent[-1].body  # byte for byte, unknown fields included
    assert fake_openai.received[-1].body["tools"] == [{"type": "web_search"}]
    (record,) = await logged(gateway)
    assert record["endpoint"] == "responses"
    assert record["provider"] == "openai"
    assert record["prompt_tokens"] is not None


async def test_the_sdk_reads_a_passed_through_answer_and_stream(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    client = sdk(gateway)
    fake_openai.responses.enqueue(TextAnswer(text="Bonjour tout le monde", reasoning="Greeting."))
    whole = await client.responses.create(model=OPENAI, input="hello")
    assert whole.output_text == "Bonjour tout le monde"
    fake_openai.responses.enqueue(TextAnswer(text="Bonjour tout le monde", reasoning="Greeting."))
    async with client.responses.stream(model=OPENAI, input="hello") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert final.output_text == whole.output_text
    assert [item.type for item in final.output] == [item.type for item in whole.output]


async def test_a_passed_through_stream_keeps_every_event_and_its_name(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.enqueue(WebSearchAnswer(novel_fields=True))
    reply = await post(gateway, {"model": OPENAI, "input": "weather?", "stream": True})
    assert reply.status_code == 200
    assert events_of(reply.content) == events_of(fake_openai.sent[-1].body)


async def test_a_failed_response_upstream_reaches_the_client_and_is_logged_as_an_error(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.enqueue(FailMidStream(after_events=4, code="server_error"))
    reply = await post(gateway, {"model": OPENAI, "input": "hello", "stream": True})
    events = events_of(reply.content)
    assert events[-1][0] == "response.failed"
    assert [name for name, _ in events].count("response.failed") == 1  # no second one of ours
    (record,) = await logged(gateway)
    assert record["status"] == "error"


async def test_a_cut_stream_ends_with_a_failed_response_for_the_same_id(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.enqueue(CutMidStream(after_events=4))
    reply = await post(gateway, {"model": OPENAI, "input": "hello", "stream": True})
    events = events_of(reply.content)
    created_id = events[0][1]["response"]["id"]
    name, failed = events[-1]
    assert name == "response.failed"
    assert failed["response"]["id"] == created_id
    assert failed["sequence_number"] == events[-2][1]["sequence_number"] + 1
    # The SDK's stream helper reads the gateway's failure as the end it is: no final response.
    fake_openai.responses.enqueue(CutMidStream(after_events=4))
    async with sdk(gateway).responses.stream(model=OPENAI, input="hello") as stream:
        kinds = [event.type async for event in stream]
        assert kinds[-1] == "response.failed"
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            await stream.get_final_response()


# -- translated ----------------------------------------------------------------------------------


async def test_a_translated_answer_and_its_stream_assemble_the_same_response(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    client = sdk(gateway)
    fake_gemini.enqueue(GeminiEcho(text="Hallo aus Gemini"))
    whole = await client.responses.create(model=GEMINI, input="hello", instructions="Be brief.")
    assert whole.output_text == "Hallo aus Gemini"
    assert whole.status == "completed"
    assert whole.usage is not None
    assert whole.usage.input_tokens > 0
    sent = fake_gemini.received[-1].body
    assert sent["systemInstruction"]["parts"][0]["text"] == "Be brief."
    fake_gemini.enqueue(GeminiEcho(text="Hallo aus Gemini"))
    async with client.responses.stream(model=GEMINI, input="hello") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert final.output_text == whole.output_text
    assert final.status == "completed"
    (first, second) = await logged(gateway, 2)
    assert {first["endpoint"], second["endpoint"]} == {"responses"}


async def test_a_built_in_tool_on_a_translated_provider_is_refused_by_name(
    gateway: RunningService,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).responses.create(
            model=GEMINI, input="weather?", tools=[WEATHER_TOOL, {"type": "web_search"}]
        )
    assert caught.value.param == "tools[1].type"


@on_each_backend
async def test_previous_response_id_continues_on_a_translated_provider(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    client = sdk(gateway)
    fake_gemini.enqueue(GeminiEcho(text="Paris is the capital."))
    first = await client.responses.create(model=GEMINI, input="What is the capital of France?")
    fake_gemini.enqueue(GeminiEcho(text="About two million."))
    second = await client.responses.create(
        model=GEMINI, input="How many people live there?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    contents = fake_gemini.received[-1].body["contents"]
    texts = [part["text"] for content in contents for part in content["parts"]]
    assert texts == [
        "What is the capital of France?",
        "Paris is the capital.",
        "How many people live there?",
    ]
    stored = await client.responses.retrieve(second.id)
    assert stored.output_text == "About two million."


@on_each_backend
async def test_store_false_keeps_nothing(gateway: RunningService, fake_gemini: FakeGemini) -> None:
    client = sdk(gateway)
    fake_gemini.enqueue(GeminiEcho(text="not kept"))
    answer = await client.responses.create(model=GEMINI, input="hello", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(answer.id)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model=GEMINI, input="again", previous_response_id=answer.id)
    assert caught.value.code == "previous_response_not_found"


async def test_function_tools_over_two_turns_translated(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    client = sdk(gateway)
    fake_gemini.enqueue(GeminiCall(name="get_weather", args={"city": "Paris"}))
    first = await client.responses.create(
        model=GEMINI, input="Weather in Paris?", tools=[WEATHER_TOOL]
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    fake_gemini.enqueue(GeminiEcho(text="It is sunny."))
    second = await client.responses.create(
        model=GEMINI,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER_TOOL],
    )
    assert second.output_text == "It is sunny."
    roles = [content["role"] for content in fake_gemini.received[-1].body["contents"]]
    assert roles == ["user", "model", "user"]


async def test_reasoning_images_and_json_schema_translated(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(GeminiThinking(thought_text="Looking at the picture.", answer='{"n": 2}'))
    answer = await sdk(gateway).responses.create(
        model=GEMINI,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "How many cats?"},
                    {"type": "input_image", "image_url": PIXEL},
                ],
            }
        ],
        text={"format": {"type": "json_schema", "name": "count", "schema": COUNT_SCHEMA}},
        reasoning={"effort": "low"},
    )
    kinds = [item.type for item in answer.output]
    assert kinds == ["reasoning", "message"]
    reasoning = answer.output[0]
    assert reasoning.type == "reasoning"
    assert [s.text for s in reasoning.summary] == ["Looking at the picture."]
    assert json.loads(answer.output_text) == {"n": 2}
    assert answer.usage is not None
    assert answer.usage.output_tokens_details.reasoning_tokens == 120
    sent = fake_gemini.received[-1].body
    parts = sent["contents"][0]["parts"]
    assert parts[1]["inlineData"]["mimeType"] == "image/png"
    assert sent["generationConfig"]["responseMimeType"] == "application/json"


async def test_a_translated_stream_cut_ends_with_response_failed(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(GeminiCut(after_chunks=2))
    reply = await post(gateway, {"model": GEMINI, "input": "hello", "stream": True})
    events = events_of(reply.content)
    assert events[0][0] == "response.created"
    name, failed = events[-1]
    assert name == "response.failed"
    assert failed["response"]["id"] == events[0][1]["response"]["id"]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    (record,) = await logged(gateway)
    assert record["status"] == "error"


async def test_a_failing_upstream_falls_back_to_a_translated_one(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_gemini: FakeGemini
) -> None:
    gateway = await start_gateway(
        {
            "providers": {
                "openai": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY},
                "gemini": {"base_url": fake_gemini.base_url, "api_key": GEMINI_KEY},
                "ollama": {"enabled": False},
            },
            "fallbacks": {OPENAI: [GEMINI]},
        }
    )
    fake_openai.responses.enqueue(server_error())
    fake_gemini.enqueue(GeminiEcho(text="From the fallback."))
    answer = await sdk(gateway).responses.create(model=OPENAI, input="hello")
    assert answer.output_text == "From the fallback."
    (record,) = await logged(gateway)
    assert (record["provider"], record["attempts"]) == ("gemini", 2)


# -- one conversation, several providers ---------------------------------------------------------


@on_each_backend
async def test_a_conversation_moves_from_openai_to_gemini_and_back(
    gateway: RunningService, fake_openai: FakeOpenAI, fake_gemini: FakeGemini
) -> None:
    client = sdk(gateway)
    fake_openai.responses.enqueue(TextAnswer(text="Paris."))
    first = await client.responses.create(model=OPENAI, input="Capital of France?")
    fake_gemini.enqueue(GeminiEcho(text="About two million."))
    second = await client.responses.create(
        model=GEMINI, input="Population?", previous_response_id=first.id
    )
    texts = [
        part["text"]
        for content in fake_gemini.received[-1].body["contents"]
        for part in content["parts"]
    ]
    assert texts == ["Capital of France?", "Paris.", "Population?"]
    # Back on OpenAI, which never saw the Gemini turn: the turns go in the input instead.
    fake_openai.responses.enqueue(TextAnswer(count_items=True))
    await client.responses.create(
        model=OPENAI, input="And its mayor?", previous_response_id=second.id
    )
    sent = fake_openai.received[-1].body
    assert "previous_response_id" not in sent
    assert len(sent["input"]) == 5  # two turns of two items, then this one


@on_each_backend
async def test_a_response_is_only_its_own_clients(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(GeminiEcho(text="mine"))
    answer = await sdk(gateway).responses.create(model=GEMINI, input="hello")
    async with http(gateway) as client:
        other = {"authorization": "Bearer sk-not-a-client"}
        denied = await client.get(f"/v1/responses/{answer.id}", headers=other)
        assert denied.status_code == 401
        mine = await client.get(f"/v1/responses/{answer.id}", headers=AUTH)
        assert mine.status_code == 200
        assert mine.json()["id"] == answer.id
        deleted = await client.delete(f"/v1/responses/{answer.id}", headers=AUTH)
        assert deleted.json() == {"id": answer.id, "object": "response", "deleted": True}
        gone = await client.get(f"/v1/responses/{answer.id}", headers=AUTH)
        assert gone.status_code == 404


@on_each_backend
async def test_a_passed_through_response_reads_back_as_the_upstreams_bytes(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.enqueue(TextAnswer(text="exactly this"))
    async with http(gateway) as client:
        created = await client.post(
            "/v1/responses", json={"model": OPENAI, "input": "hello"}, headers=AUTH
        )
        assert created.status_code == 200
        fetched = await client.get(f"/v1/responses/{created.json()['id']}", headers=AUTH)
    assert fetched.status_code == 200
    # Stored as it came, never decoded and re-encoded: the same bytes, field order and all.
    assert fetched.content == created.content


@on_each_backend
async def test_deleting_a_passed_through_response_deletes_it_upstream_too(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    client = sdk(gateway)
    fake_openai.responses.enqueue(TextAnswer(text="kept at OpenAI"))
    answer = await client.responses.create(model=OPENAI, input="hello")
    assert answer.id in fake_openai.responses.stored
    fetched = await client.responses.retrieve(answer.id)
    assert fetched.output_text == "kept at OpenAI"
    await client.responses.delete(answer.id)
    assert answer.id not in fake_openai.responses.stored
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(answer.id)


# -- Codex CLI's requests --------------------------------------------------------------------------


def codex_turn(history: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """A body as Codex CLI sends it: stateless, the whole history each turn."""
    return {
        "model": OPENAI,
        "instructions": "You are Codex, a coding agent.",
        "input": [
            *history,
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199a0b1-session",
    }


async def test_codex_turns_pass_through_with_encrypted_reasoning_returned(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.enqueue(FunctionCalls(calls=(FunctionCall(),), reasoning="Need weather."))
    first = await post(gateway, codex_turn([], "Weather in Paris?"))
    done = [
        data["item"]
        for name, data in events_of(first.content)
        if name == "response.output_item.done"
    ]
    reasoning = next(item for item in done if item["type"] == "reasoning")
    assert reasoning["encrypted_content"]
    call = next(item for item in done if item["type"] == "function_call")
    history = [
        *codex_turn([], "Weather in Paris?")["input"],
        reasoning,
        {k: call[k] for k in ("type", "call_id", "name", "arguments")},
        {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
    ]
    fake_openai.responses.enqueue(TextAnswer(text="Sunny in Paris."))
    second = await post(gateway, codex_turn(history, "Thanks"))
    assert events_of(second.content)[-1][0] == "response.completed"
    assert fake_openai.responses.encrypted_returned == [reasoning["encrypted_content"]]


async def test_codex_turns_translated(gateway: RunningService, fake_openai: FakeOpenAI) -> None:
    # DeepSeek serves no Responses API: Codex's turns to it are translated to chat. (Gemini:
    # tests/test_one_tool_call.py.)
    fake_openai.enqueue(ChatToolCalls(name="get_weather", arguments='{"city":"Paris"}'))
    first = await post(gateway, codex_turn([], "Weather in Paris?") | {"model": DEEPSEEK})
    done = [
        d["item"] for name, d in events_of(first.content) if name == "response.output_item.done"
    ]
    call = next(item for item in done if item["type"] == "function_call")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    foreign = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAABx"}
    history = [
        *codex_turn([], "Weather in Paris?")["input"],
        foreign,
        {k: call[k] for k in ("type", "call_id", "name", "arguments")},
        {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
    ]
    fake_openai.enqueue(ChatEcho(text="Sunny in Paris."))
    second = await post(gateway, codex_turn(history, "Thanks") | {"model": DEEPSEEK})
    events = events_of(second.content)
    assert events[-1][0] == "response.completed"
    assert events[-1][1]["response"]["output"][-1]["content"][0]["text"] == "Sunny in Paris."
    messages = fake_openai.received[-1].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assert messages[2]["tool_calls"][0]["id"] == call["call_id"]
