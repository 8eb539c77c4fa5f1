"""``parallel_tool_calls: false`` on Gemini and Ollama, which cannot be told it: the gateway hands
on the first call of an answer only. Unit checks of the filter, then the whole gateway with the
official SDK against the Gemini and Ollama fakes, and Codex CLI's turns through Gemini."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
import trio

from proxy.chat import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    ResponseMessage,
    ResponseToolCall,
    ToolCallDelta,
    chat_request_of,
)
from proxy.errors import UpstreamError
from proxy.providers.base import ChunkParser
from proxy.providers.one_tool_call import (
    OneToolCallParser,
    asks_one_tool_call,
    first_tool_call_only,
)
from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway, http, sdk
from tests.fakes.gemini_upstream import DEFAULT_API_KEY as GEMINI_KEY
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.gemini_upstream import FunctionCall as GeminiCall
from tests.fakes.ollama_upstream import FakeOllama, ToolCalls

GEMINI = "gemini-3-flash-preview"  # the fake checks this family's thought signatures
OLLAMA = "ollama/llama3.2"
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
CHAT_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
RESPONSES_TOOL = {"type": "function", "name": "get_weather", **CHAT_TOOL["function"]}  # type: ignore[dict-item]
QUESTION = [{"role": "user", "content": "Weather in Paris and Rome?"}]


# -- the filter ------------------------------------------------------------------------------


def test_only_a_client_that_allows_one_call_and_may_get_one_asks_for_it() -> None:
    def asks(**fields: Any) -> bool:
        return asks_one_tool_call(chat_request_of({"model": "m", "messages": QUESTION, **fields}))

    assert asks(tools=[CHAT_TOOL], parallel_tool_calls=False)
    assert asks(tools=[CHAT_TOOL], parallel_tool_calls=False, tool_choice="required")
    assert not asks(tools=[CHAT_TOOL])
    assert not asks(tools=[CHAT_TOOL], parallel_tool_calls=True)
    assert not asks(tools=[CHAT_TOOL], parallel_tool_calls=False, tool_choice="none")
    assert not asks(parallel_tool_calls=False)


def _call(i: int) -> ResponseToolCall:
    return ResponseToolCall(f"call_{i}", FunctionCall(name="f", arguments=f'{{"i":{i}}}'))


def test_an_answer_keeps_the_first_call_of_each_choice_and_everything_else() -> None:
    message = ResponseMessage(content="thinking aloud", tool_calls=[_call(1), _call(2), _call(3)])
    single = ResponseMessage(content=None, tool_calls=[_call(4)])
    response = ChatResponse(
        id="x",
        created=1,
        model="m",
        choices=[
            Choice(index=0, message=message, finish_reason="tool_calls"),
            Choice(index=1, message=single, finish_reason="tool_calls"),
        ],
    )
    kept = first_tool_call_only(response)
    assert [c.id for c in kept.choices[0].message.tool_calls] == ["call_1"]  # type: ignore[union-attr]
    assert kept.choices[0].message.content == "thinking aloud"
    assert kept.choices[0].finish_reason == "tool_calls"
    assert [c.id for c in kept.choices[1].message.tool_calls] == ["call_4"]  # type: ignore[union-attr]


class _Scripted(ChunkParser[ChatChunk]):
    """Chunks from JSON lines; ``!`` is an in-stream error."""

    def _feed(self, data: bytes, chunks: list[ChatChunk]) -> None:
        for line in data.splitlines():
            if line == b"!":
                raise UpstreamError("boom")
            chunks.append(msgspec.json.decode(line, type=ChatChunk))

    def _finish(self, chunks: list[ChatChunk]) -> None:
        return


def _chunk(*deltas: tuple[int, int, str], text: str | None = None) -> bytes:
    """One chunk: (choice, tool call index, argument piece) deltas, the first of an index named."""
    choices: dict[int, ChunkChoice] = {}
    for choice, index, piece in deltas:
        delta = choices.setdefault(choice, ChunkChoice(index=choice, delta=Delta(tool_calls=[])))
        call = ToolCallDelta(index=index, function=FunctionCallDelta(arguments=piece))
        delta.delta.tool_calls.append(call)  # type: ignore[union-attr]
    if text is not None:
        choices.setdefault(0, ChunkChoice(delta=Delta())).delta.content = text
    return msgspec.json.encode(ChatChunk(id="c", created=1, model="m", choices=[*choices.values()]))


def _calls_of(chunks: list[ChatChunk]) -> list[tuple[int, int, str | None]]:
    return [
        (choice.index, call.index, call.function.arguments if call.function else None)
        for chunk in chunks
        for choice in chunk.choices
        for call in choice.delta.tool_calls or []
    ]


def test_a_stream_keeps_the_deltas_of_each_choices_first_call_and_the_rest_of_its_chunks() -> None:
    parser = OneToolCallParser(_Scripted())
    chunks = parser.feed(
        _chunk((0, 0, '{"a"'), (1, 3, '{"z"'))
        + b"\n"
        + _chunk((0, 0, ":1}"), (0, 1, '{"b":2}'), text="and")
        + b"\n"
        + _chunk((0, 2, "{}"), (1, 4, "{}"), (1, 3, "}"))
    )
    assert _calls_of(chunks) == [(0, 0, '{"a"'), (1, 3, '{"z"'), (0, 0, ":1}"), (1, 3, "}")]
    # Chunks whose calls all went stay, without calls, for what else they carry.
    assert len(chunks) == 3
    assert chunks[1].choices[0].delta.content == "and"
    assert chunks[2].choices[0].delta.tool_calls is None


def test_an_error_after_chunks_is_still_held_behind_them() -> None:
    parser = OneToolCallParser(_Scripted())
    chunks = parser.feed(_chunk((0, 0, "{}"), (0, 1, "{}")) + b"\n!")
    assert _calls_of(chunks) == [(0, 0, "{}")]
    assert isinstance(parser.failure, UpstreamError)
    with pytest.raises(UpstreamError, match="boom"):
        parser.feed(b"")
    with pytest.raises(UpstreamError, match="boom"):
        OneToolCallParser(_Scripted()).feed(b"!")


# -- through the gateway -----------------------------------------------------------------------


@pytest.fixture
async def gateway(
    start_gateway: StartGateway, fake_gemini: FakeGemini, fake_ollama: FakeOllama
) -> RunningService:
    return await start_gateway(
        {
            "providers": {
                "gemini": {"base_url": fake_gemini.base_url, "api_key": GEMINI_KEY},
                "ollama": {"base_url": fake_ollama.base_url},
            }
        }
    )


def _two_calls(fake_gemini: FakeGemini, fake_ollama: FakeOllama, model: str) -> None:
    if model == GEMINI:
        fake_gemini.enqueue(
            GeminiCall(
                "get_weather", {"city": "Paris"}, parallel=(("get_weather", {"city": "Rome"}),)
            )
        )
    else:
        fake_ollama.enqueue(
            ToolCalls(calls=(("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})))
        )


@pytest.mark.parametrize("model", [GEMINI, OLLAMA])
@pytest.mark.parametrize("parallel", [False, True, None])
async def test_the_answer_has_one_call_only_when_the_client_asked_for_one(
    gateway: RunningService,
    fake_gemini: FakeGemini,
    fake_ollama: FakeOllama,
    model: str,
    parallel: bool | None,
) -> None:
    client = sdk(gateway)
    extra = {} if parallel is None else {"parallel_tool_calls": parallel}
    _two_calls(fake_gemini, fake_ollama, model)
    answer = await client.chat.completions.create(
        model=model,
        messages=QUESTION,
        tools=[CHAT_TOOL],
        **extra,  # type: ignore[arg-type]
    )
    cities = [
        json.loads(c.function.arguments)["city"] for c in answer.choices[0].message.tool_calls or []
    ]
    assert cities == (["Paris"] if parallel is False else ["Paris", "Rome"])
    assert answer.choices[0].finish_reason == "tool_calls"

    _two_calls(fake_gemini, fake_ollama, model)
    stream = await client.chat.completions.create(
        model=model,
        messages=QUESTION,
        tools=[CHAT_TOOL],
        stream=True,
        **extra,  # type: ignore[arg-type]
    )
    calls: list[Any] = []
    async for chunk in stream:
        for choice in chunk.choices:
            calls.extend(choice.delta.tool_calls or [])
    streamed = [json.loads(c.function.arguments)["city"] for c in calls]
    assert streamed == cities


def _codex_turn(history: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """A body as Codex CLI sends it (stateless, the whole history, one tool call per answer)."""
    return {
        "model": GEMINI,
        "instructions": "You are Codex, a coding agent.",
        "input": [
            *history,
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        ],
        "tools": [RESPONSES_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199a0b1-session",
    }


def _events_of(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in body.split(b"\n\n"):
        lines = block.split(b"\n")
        names = [ln[7:].decode() for ln in lines if ln.startswith(b"event: ")]
        datas = [ln[6:] for ln in lines if ln.startswith(b"data: ")]
        if names and datas:
            found.append((names[0], json.loads(datas[0])))
    return found


async def test_codex_turns_work_through_gemini(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    async with http(gateway) as client:
        fake_gemini.enqueue(
            GeminiCall(
                "get_weather",
                {"city": "Paris"},
                signature="sig-codex",
                parallel=(("get_weather", {"city": "Rome"}),),
            )
        )
        with trio.fail_after(10):
            first = await client.post(
                "/v1/responses", json=_codex_turn([], "Weather in Paris and Rome?"), headers=AUTH
            )
        assert first.status_code == 200, first.text
        events = _events_of(first.content)
        assert events[-1][0] == "response.completed"
        output = events[-1][1]["response"]["output"]
        (call,) = [item for item in output if item["type"] == "function_call"]
        assert json.loads(call["arguments"]) == {"city": "Paris"}

        # Codex runs the one call and sends everything back, as it does every turn.
        history = [
            *_codex_turn([], "Weather in Paris and Rome?")["input"],
            *output,
            {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
        ]
        fake_gemini.enqueue(GeminiCall("get_weather", {"city": "Rome"}, signature="sig-codex-2"))
        with trio.fail_after(10):
            second = await client.post(
                "/v1/responses", json=_codex_turn(history, "Go on"), headers=AUTH
            )
    assert second.status_code == 200, second.text
    (model_turn,) = [c for c in fake_gemini.received[-1].body["contents"] if c["role"] == "model"]
    # The one call handed on goes back with its signature (Gemini 3 refuses it without).
    assert [p["functionCall"]["args"] for p in model_turn["parts"] if "functionCall" in p] == [
        {"city": "Paris"}
    ]
    assert model_turn["parts"][0]["thoughtSignature"] == "sig-codex"
    final = _events_of(second.content)[-1][1]["response"]["output"]
    assert [json.loads(i["arguments"]) for i in final if i["type"] == "function_call"] == [
        {"city": "Rome"}
    ]
