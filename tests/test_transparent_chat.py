"""Issue 14: a same-protocol call (OpenAI chat client → OpenAI-compatible upstream) is transparent.

The client's body goes upstream as sent (only the model renamed, `stream_options.include_usage`
forced on for streams, `max_tokens` renamed `max_completion_tokens` for OpenAI), and the upstream's
answer comes back byte-faithful: the whole body, or each SSE event's data. The only edits are the
ones the gateway owes the client: the usage chunk it did not ask for is hidden (and then each
chunk's `"usage":null` removed), xAI's usage normalised, DeepSeek's cache hits also given as
`prompt_tokens_details.cached_tokens`. Every test drives the whole gateway with the official SDK
and checks the raw bytes or JSON too where the SDK would hide a difference.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway, http, sdk
from tests.fakes.compat_upstreams import (
    deepseek_completion,
    deepseek_stream,
    xai_completion,
    xai_stream,
)
from tests.fakes.openai_upstream import (
    DEFAULT_API_KEY,
    AudioAnswer,
    CustomToolCall,
    Echo,
    FakeOpenAI,
    ToolCalls,
    event_stream,
    json_answer,
)

HELLO = [{"role": "user", "content": "hello there gateway"}]
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
CHAT = "/v1/chat/completions"
CREATED = 1700000123  # an upstream's `created`, far from the gateway's clock
ZERO_DETAILS = {
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
CITATION = {
    "type": "url_citation",
    "url_citation": {
        "start_index": 0,
        "end_index": 23,
        "url": "https://example.org/paris?utm_source=openai",
        "title": "Paris weather",
    },
}


# ---------------------------------------------------------------------------------------------
# Helpers


async def post(gateway: RunningService, body: dict[str, Any]) -> httpx.Response:
    """One chat call sent raw (body read whole), bounded in time."""
    async with http(gateway) as client:
        with trio.fail_after(10):
            return await client.post(CHAT, json=body, headers=AUTH)


def event_data(body: bytes) -> list[bytes]:
    """The data of each SSE event of a body, in order (comments skipped)."""
    found: list[bytes] = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line.startswith(b"data:")]
        if lines:
            found.append(b"\n".join(line[5:].removeprefix(b" ") for line in lines))
    return found


def without_usage_null(data: bytes) -> bytes:
    """An OpenAI chunk's data as a client that did not ask for usage gets it."""
    return data.replace(b',"usage":null', b"")


def completion(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A chat.completion body as OpenAI sends it today, with `extra` added at the top level."""
    return {
        "id": "chatcmpl-transparent1",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, **ZERO_DETAILS},
        "service_tier": "default",
        "system_fingerprint": "fp_transparent",
        **extra,
    }


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI sends it when usage is asked for."""
    return {
        "id": "chatcmpl-transparent2",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o",
        "service_tier": "default",
        "system_fingerprint": "fp_transparent",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
        **extra,
    }


def usage_chunk(usage: dict[str, Any]) -> dict[str, Any]:
    """The usage-only chunk that ends a stream asked for usage."""
    body = chunk({}, usage=usage)
    body["choices"] = []
    return body


# ---------------------------------------------------------------------------------------------
# 1. Zero counts kept


async def test_zero_token_details_reach_the_sdk_as_zeros(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    reply = await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    usage = reply.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0  # not None: client code divides by it
    assert usage.prompt_tokens_details.audio_tokens == 0
    details = usage.completion_tokens_details
    assert details is not None
    assert (details.reasoning_tokens, details.audio_tokens) == (0, 0)
    assert (details.accepted_prediction_tokens, details.rejected_prediction_tokens) == (0, 0)
    sent = json.loads(fake_openai.sent[-1].body)["usage"]
    assert usage.model_dump(exclude_unset=True) == sent


async def test_zero_token_details_reach_the_sdk_as_zeros_streamed(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    stream = await sdk(gateway).chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.rejected_prediction_tokens == 0
    sent = json.loads(fake_openai.sent[-1].event_data()[-2])["usage"]
    assert usage.model_dump(exclude_unset=True) == sent


# ---------------------------------------------------------------------------------------------
# 2. Fields the gateway never modelled


async def test_annotations_refusal_prediction_counts_and_created_pass(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    message = {
        "role": "assistant",
        "content": "It is sunny in Paris.",
        "refusal": None,
        "annotations": [CITATION],
    }
    body = completion(message, service_tier="priority")
    body["usage"]["completion_tokens_details"] |= {
        "accepted_prediction_tokens": 3,
        "rejected_prediction_tokens": 1,
    }
    fake_openai.enqueue(json_answer(body))
    reply = await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert reply.created == CREATED
    assert reply.id == "chatcmpl-transparent1"
    assert reply.system_fingerprint == "fp_transparent"
    assert reply.service_tier == "priority"
    annotations = reply.choices[0].message.annotations
    assert annotations is not None
    assert annotations[0].url_citation.url == CITATION["url_citation"]["url"]  # type: ignore[index]
    assert reply.usage is not None
    assert reply.usage.completion_tokens_details is not None
    assert reply.usage.completion_tokens_details.accepted_prediction_tokens == 3
    assert reply.model_dump(exclude_unset=True) == body


async def test_a_refusal_passes(gateway: RunningService, fake_openai: FakeOpenAI) -> None:
    refused = "I'm sorry, I can't help with that."
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None,
        "refusal": refused,
        "annotations": [],
    }
    fake_openai.enqueue(json_answer(completion(message)))
    reply = await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert reply.choices[0].message.refusal == refused
    assert reply.choices[0].message.content is None

    events = [
        chunk({"role": "assistant", "content": None, "refusal": ""}),
        chunk({"refusal": "I'm sorry, "}),
        chunk({"refusal": "I can't help with that."}),
        chunk({}, "stop"),
        usage_chunk({"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}),
    ]
    fake_openai.enqueue(event_stream(*events))
    stream = await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    pieces = [c.choices[0].delta.refusal or "" async for c in stream if c.choices]
    assert "".join(pieces) == refused


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_audio_output_passes_with_content_null(
    gateway: RunningService, fake_openai: FakeOpenAI, streamed: bool
) -> None:
    audio = AudioAnswer()
    fake_openai.enqueue(audio)
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-audio-preview",
        "messages": HELLO,
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
    }
    if not streamed:
        reply = await sdk(gateway).chat.completions.create(**kwargs)
        message = reply.choices[0].message
        assert message.content is None
        assert message.audio is not None
        assert message.audio.transcript == audio.transcript
        assert message.audio.data == audio.data
        assert message.audio.expires_at == audio.expires_at
        assert reply.usage is not None
        assert reply.usage.completion_tokens_details is not None
        assert reply.usage.completion_tokens_details.audio_tokens == 4
        assert reply.model_dump(exclude_unset=True) == json.loads(fake_openai.sent[-1].body)
    else:
        stream = await sdk(gateway).chat.completions.create(**kwargs, stream=True)
        deltas = [c.choices[0].delta async for c in stream if c.choices]
        pieces = [d.audio.model_dump(exclude_unset=True) for d in deltas if d.audio]
        assert pieces == [
            {"id": pieces[0]["id"], "transcript": audio.transcript},
            {"data": audio.data},
            {"expires_at": audio.expires_at},
        ]
    sent = fake_openai.received[-1].body
    assert sent["modalities"] == ["text", "audio"]
    assert sent["audio"] == {"voice": "alloy", "format": "wav"}


async def test_stream_keeps_obfuscation_created_fingerprint_and_tier(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    stream = await sdk(gateway).chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    got = [c async for c in stream]
    sent = [json.loads(data) for data in fake_openai.sent[-1].event_data()[:-1]]
    assert len(got) == len(sent)
    for mine, theirs in zip(got, sent, strict=True):
        assert mine.obfuscation == theirs["obfuscation"]
        assert (mine.created, mine.id) == (theirs["created"], theirs["id"])
        assert mine.system_fingerprint == theirs["system_fingerprint"]
        assert mine.service_tier == theirs["service_tier"]


async def test_streamed_annotations_pass(gateway: RunningService, fake_openai: FakeOpenAI) -> None:
    events = [
        chunk({"role": "assistant", "content": "", "refusal": None}),
        chunk({"content": "It is sunny in Paris."}),
        chunk({"annotations": [CITATION]}),
        chunk({}, "stop"),
        usage_chunk({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}),
    ]
    fake_openai.enqueue(event_stream(*events))
    stream = await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    extras = [c.choices[0].delta.model_extra async for c in stream if c.choices]
    assert {"annotations": [CITATION]} in extras


# ---------------------------------------------------------------------------------------------
# 3. Unknown future fields, both ways

FUTURE = {"future_field": {"nested": [1, 2.5, None, True, "ünïcode"], "empty": {}}}


def future_completion() -> dict[str, Any]:
    """An answer with unknown fields at every level: top, choice, message, tool call, usage."""
    tool_call = {
        "id": "call_future",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}', "future_fn": 1},
        "future_tool_call": "x",
    }
    message = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
        "tool_calls": [tool_call],
        "future_message": [{"type": "thought", "text": "…"}],
    }
    body = completion(message, future_top=FUTURE, model="gpt-4o")
    body["choices"][0] |= {"finish_reason": "tool_calls", "future_choice": {"score": 0.5}}
    body["usage"] |= {"future_usage": {"tokens": 0}}
    body["usage"]["prompt_tokens_details"] |= {"future_detail": 0}
    return body


def future_events() -> list[dict[str, Any]]:
    """A stream with unknown fields on every chunk, choice, delta, tool call and the usage."""
    header = {
        "index": 0,
        "id": "call_future",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "", "future_fn": None},
        "future_tool_call": {"a": []},
    }
    first = chunk({"role": "assistant", "content": None, "tool_calls": [header]}, future_top=1)
    first["choices"][0]["future_choice"] = "c"
    argument = {"index": 0, "function": {"arguments": '{"city":"Paris"}'}, "future_tool_call": 0}
    middle = chunk({"tool_calls": [argument], "future_delta": {"x": False}}, future_top=FUTURE)
    usage = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, **ZERO_DETAILS}
    return [
        first,
        middle,
        chunk({}, "tool_calls", future_top=[]),
        usage_chunk({**usage, "future_usage": 7}) | {"future_top": "last"},
    ]


async def test_unknown_answer_fields_come_back_unchanged(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    body = future_completion()
    fake_openai.enqueue(json_answer(body))
    reply = await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert reply.model_extra == {"future_top": FUTURE}
    assert reply.choices[0].message.model_extra == {
        "future_message": [{"type": "thought", "text": "…"}]
    }
    assert reply.model_dump(exclude_unset=True) == body

    fake_openai.enqueue(json_answer(body))
    raw = await post(gateway, {"model": "gpt-4o", "messages": HELLO})
    assert raw.status_code == 200, raw.text
    assert raw.json() == body


async def test_unknown_event_fields_come_back_unchanged(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    events = future_events()
    fake_openai.enqueue(event_stream(*events))
    stream = await sdk(gateway).chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    got = [c.model_dump(exclude_unset=True) async for c in stream]
    assert got == events

    fake_openai.enqueue(event_stream(*events))
    body = {"model": "gpt-4o", "messages": HELLO, "stream": True}
    raw = await post(gateway, body | {"stream_options": {"include_usage": True}})
    assert event_data(raw.content) == fake_openai.sent[-1].event_data()


async def test_unknown_request_fields_reach_the_upstream_unchanged(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object"}, "future_fn": 1},
        "future_tool": {"k": [None]},
    }
    body: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief.", "future_message": True},
            {"role": "user", "content": [{"type": "text", "text": "hi", "future_part": 1}]},
            {"role": "user", "content": [{"type": "future_part_type", "payload": "…"}]},
        ],
        "tools": [tool],
        "prompt_cache_key": "tenant-42",
        "safety_identifier": "user-7",
        "verbosity": "low",
        "future_request_field": FUTURE,
    }
    reply = await post(gateway, body)
    assert reply.status_code == 200, reply.text
    assert fake_openai.received[-1].body == body

    # The SDK's own spelling of the same, through extra_body and typed parameters.
    await sdk(gateway).chat.completions.create(
        model="gpt-4o",
        messages=body["messages"],
        tools=[tool],  # type: ignore[list-item]
        prompt_cache_key="tenant-42",
        extra_body={"future_request_field": FUTURE},
    )
    sent = fake_openai.received[-1].body
    assert sent["future_request_field"] == FUTURE
    assert sent["messages"] == body["messages"]
    assert sent["tools"] == [tool]


async def test_a_stream_request_reaches_the_upstream_with_only_the_owed_edits(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    body: dict[str, Any] = {
        "model": "fast",  # the alias of gpt-4o-mini
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_obfuscation": False, "future_option": 1},
        "max_tokens": 50,
        "logit_bias": {"50256": -100},
        "future_request_field": FUTURE,
    }
    async with http(gateway) as client:
        with trio.fail_after(10):
            reply = await client.post(CHAT, json=body, headers=AUTH)
    assert reply.status_code == 200, reply.text
    expected = {key: value for key, value in body.items() if key != "max_tokens"}
    expected |= {"model": "gpt-4o-mini", "max_completion_tokens": 50}
    expected["stream_options"] = {**body["stream_options"], "include_usage": True}
    assert fake_openai.received[-1].body == expected


# ---------------------------------------------------------------------------------------------
# 4. Custom tools both ways

CUSTOM_TOOL = {
    "type": "custom",
    "custom": {
        "name": "code_exec",
        "description": "Runs Python code.",
        "format": {
            "type": "grammar",
            "grammar": {"syntax": "lark", "definition": 'start: "print(" NUMBER ")"'},
        },
    },
}


async def test_custom_tools_reach_the_upstream_and_its_custom_call_comes_back(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    tool = CustomToolCall()
    fake_openai.enqueue(tool)
    reply = await sdk(gateway).chat.completions.create(
        model="gpt-4o",
        messages=HELLO,
        tools=[CUSTOM_TOOL],
        tool_choice={"type": "custom", "custom": {"name": "code_exec"}},
    )
    sent = fake_openai.received[-1].body
    assert sent["tools"] == [CUSTOM_TOOL]
    assert sent["tool_choice"] == {"type": "custom", "custom": {"name": "code_exec"}}
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.type == "custom"
    assert (call.custom.name, call.custom.input) == (tool.name, tool.input)
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.model_dump(exclude_unset=True) == json.loads(fake_openai.sent[-1].body)

    # The assistant turn with the custom call, and its output, go back as sent.
    follow_up = [
        *HELLO,
        reply.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "45"},
    ]
    await sdk(gateway).chat.completions.create(
        model="gpt-4o",
        messages=follow_up,
        tools=[CUSTOM_TOOL],  # type: ignore[list-item]
    )
    assert fake_openai.received[-1].body["messages"] == follow_up


async def test_a_streamed_custom_tool_call_comes_back(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    tool = CustomToolCall()
    fake_openai.enqueue(tool)
    stream = await sdk(gateway).chat.completions.create(
        model="gpt-4o",
        messages=HELLO,
        tools=[CUSTOM_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    calls = [
        call async for c in stream if c.choices for call in c.choices[0].delta.tool_calls or []
    ]
    assert calls[0].type == "custom"
    assert calls[0].model_extra is not None
    assert calls[0].model_extra["custom"]["name"] == tool.name
    streamed = "".join((c.model_extra or {})["custom"]["input"] for c in calls)
    assert streamed == tool.input

    fake_openai.enqueue(tool)
    raw = await post(
        gateway,
        {
            "model": "gpt-4o",
            "messages": HELLO,
            "tools": [CUSTOM_TOOL],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert raw.status_code == 200, raw.text
    assert event_data(raw.content) == fake_openai.sent[-1].event_data()


# ---------------------------------------------------------------------------------------------
# 5. "stream": null


async def test_stream_none_is_a_normal_answer(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    # The SDK sends `"stream": null` for stream=None.
    reply = await sdk(gateway).chat.completions.create(
        model="gpt-4o",
        messages=HELLO,
        stream=None,
    )
    assert reply.choices[0].message.content == "echo: hello there gateway"
    assert fake_openai.received[-1].body.get("stream") in (None, False)

    raw = await post(gateway, {"model": "gpt-4o", "messages": HELLO, "stream": None})
    assert raw.status_code == 200, raw.text
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.content == fake_openai.sent[-1].body


# ---------------------------------------------------------------------------------------------
# 6. The upstream judges what the gateway does not


async def test_the_upstreams_400_for_a_parameter_comes_back(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO, temperature=5)
    assert caught.value.status_code == 400
    assert fake_openai.sent, f"the gateway judged it itself: {caught.value.message}"
    upstream = json.loads(fake_openai.sent[-1].body)["error"]
    assert upstream["message"] in caught.value.message
    assert caught.value.param == "temperature"
    assert caught.value.code == "decimal_above_max_value"
    assert caught.value.type == "invalid_request_error"
    assert fake_openai.received[-1].body["temperature"] == 5


async def test_the_upstreams_400_for_a_wrongly_typed_parameter_comes_back(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    reply = await post(gateway, {"model": "gpt-4o", "messages": HELLO, "temperature": "hot"})
    assert reply.status_code == 400, reply.text
    assert fake_openai.sent, f"the gateway judged it itself: {reply.text}"
    upstream = json.loads(fake_openai.sent[-1].body)["error"]
    error = reply.json()["error"]
    assert upstream["message"] in error["message"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "temperature",
        "invalid_type",
    )


@pytest.mark.parametrize(
    "field",
    [
        {"top_p": "high"},
        {"response_format": {"type": "future_format"}},
        {"tool_choice": {"type": "future"}},
        {"reasoning_effort": "ultra"},
    ],
    ids=["top_p", "response_format", "tool_choice", "reasoning_effort"],
)
async def test_fields_the_gateway_does_not_act_on_are_not_judged_by_it(
    gateway: RunningService, fake_openai: FakeOpenAI, field: dict[str, Any]
) -> None:
    reply = await post(gateway, {"model": "gpt-4o", "messages": HELLO, **field})
    # The fake takes them; OpenAI would judge them itself, and its answer would come back.
    assert reply.status_code == 200, reply.text
    assert fake_openai.received[-1].body == {"model": "gpt-4o", "messages": HELLO, **field}


# ---------------------------------------------------------------------------------------------
# 8. Byte-faithful


@pytest.mark.parametrize("behaviour", [Echo(), ToolCalls(), AudioAnswer(), CustomToolCall()])
async def test_a_whole_answer_is_the_upstreams_bytes(
    gateway: RunningService, fake_openai: FakeOpenAI, behaviour: Any
) -> None:
    fake_openai.enqueue(behaviour)
    reply = await post(gateway, {"model": "gpt-4o", "messages": HELLO})
    assert reply.status_code == 200, reply.text
    assert reply.content == fake_openai.sent[-1].body


async def test_odd_but_valid_json_is_passed_as_is(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    # Spacing, key order, escapes and number spellings a re-encoder would change.
    body = json.dumps(
        completion({"role": "assistant", "content": "caf\u00e9 \u2603 </script>"}),
        indent=1,
        ensure_ascii=True,
    ).encode()
    unknown = b'"future_number": 1.50E+2,\n "system_fingerprint"'
    body = body.replace(b'"system_fingerprint"', unknown, 1)
    fake_openai.enqueue(json_answer(body))
    reply = await post(gateway, {"model": "gpt-4o", "messages": HELLO})
    assert reply.status_code == 200, reply.text
    assert reply.content == body


@pytest.mark.parametrize("behaviour", [Echo(), ToolCalls(), AudioAnswer(), CustomToolCall()])
async def test_each_event_is_the_upstreams_bytes(
    gateway: RunningService, fake_openai: FakeOpenAI, behaviour: Any
) -> None:
    fake_openai.enqueue(behaviour)
    options = {"include_usage": True}
    body = {"model": "gpt-4o", "messages": HELLO, "stream": True, "stream_options": options}
    reply = await post(gateway, body)
    assert reply.status_code == 200, reply.text
    assert event_data(reply.content) == fake_openai.sent[-1].event_data()


@pytest.mark.parametrize("behaviour", [Echo(), ToolCalls(), CustomToolCall()])
@pytest.mark.parametrize("obfuscation", [True, False], ids=["obfuscated", "plain"])
async def test_without_usage_asked_only_the_usage_is_edited(
    gateway: RunningService, fake_openai: FakeOpenAI, behaviour: Any, obfuscation: bool
) -> None:
    # OpenAI puts "usage":null before "obfuscation" (the last member) in every chunk.
    fake_openai.enqueue(behaviour)
    body: dict[str, Any] = {"model": "gpt-4o", "messages": HELLO, "stream": True}
    if not obfuscation:
        body["stream_options"] = {"include_obfuscation": False}
    reply = await post(gateway, body)
    assert reply.status_code == 200, reply.text
    sent = fake_openai.sent[-1].event_data()
    usage_only = sent[-2]
    assert json.loads(usage_only)["choices"] == []
    expected = [without_usage_null(data) for data in sent if data != usage_only]
    assert event_data(reply.content) == expected
    for data in event_data(reply.content)[:-1]:
        assert "usage" not in json.loads(data)


# ---------------------------------------------------------------------------------------------
# The provider quirks the gateway normalises: that edit on that event, nothing else


@pytest.fixture
async def compat(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    """The gateway with DeepSeek and xAI both pointed at the fake."""
    provider = {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY}
    return await start_gateway({"providers": {"deepseek": provider, "grok": provider}})


def xai_normalised(usage: dict[str, Any]) -> dict[str, Any]:
    """xAI's usage as OpenAI counts it: reasoning tokens inside completion_tokens."""
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    return usage | {"completion_tokens": usage["completion_tokens"] + reasoning}


def deepseek_normalised(usage: dict[str, Any]) -> dict[str, Any]:
    """DeepSeek's usage with its cache hits also where OpenAI puts them."""
    details = {"cached_tokens": usage["prompt_cache_hit_tokens"]}
    return usage | {"prompt_tokens_details": details}


async def test_xai_usage_is_the_only_edit(compat: RunningService, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(xai_completion())
    reply = await post(compat, {"model": "grok-4.3", "messages": HELLO})
    assert reply.status_code == 200, reply.text
    sent = json.loads(fake_openai.sent[-1].body)
    assert reply.json() == sent | {"usage": xai_normalised(sent["usage"])}

    fake_openai.enqueue(xai_stream())
    options = {"include_usage": True}
    body = {"model": "grok-4.3", "messages": HELLO, "stream": True, "stream_options": options}
    reply = await post(compat, body)
    *sent_events, usage_event, done = fake_openai.sent[-1].event_data()
    *got_events, got_usage, got_done = event_data(reply.content)
    assert got_events == sent_events  # the events without usage: the very bytes
    usage = json.loads(usage_event)
    assert json.loads(got_usage) == usage | {"usage": xai_normalised(usage["usage"])}
    assert got_done == done == b"[DONE]"


async def test_deepseek_cache_hits_are_the_only_edit(
    compat: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(deepseek_completion())
    reply = await post(compat, {"model": "deepseek-reasoner", "messages": HELLO})
    assert reply.status_code == 200, reply.text
    sent = json.loads(fake_openai.sent[-1].body)
    assert reply.json() == sent | {"usage": deepseek_normalised(sent["usage"])}

    fake_openai.enqueue(deepseek_stream())
    options = {"include_usage": True}
    body = {"model": "deepseek-reasoner", "messages": HELLO, "stream": True}
    reply = await post(compat, body | {"stream_options": options})
    *sent_events, finish_event, done = fake_openai.sent[-1].event_data()
    *got_events, got_finish, got_done = event_data(reply.content)
    assert got_events == sent_events
    finish = json.loads(finish_event)
    assert json.loads(got_finish) == finish | {"usage": deepseek_normalised(finish["usage"])}
    assert got_done == done == b"[DONE]"
