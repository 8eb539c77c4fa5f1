"""Property (issue 14): whatever unknown keys an OpenAI-compatible upstream adds to its answers and
events, at any level (top, choice, message or delta, tool call and its function, usage), the
client receives them unchanged; and whatever unknown keys a client adds to its request (top,
message, tool), the upstream receives them unchanged.

One gateway (openai, deepseek and grok providers, all pointed at one fake OpenAI) is started per
test; hypothesis draws the examples in a worker thread and each example hops back into the trio
loop for its real HTTP call (the scheme of ``tests/test_hostile_input.py``). The generated keys
never collide with the ones the gateway reads or edits (``RESERVED``); the usage it normalises
for xAI and DeepSeek is drawn so that their normalisation changes nothing, so the JSON the client
gets must equal the JSON the fake sent, exactly, answer by answer and event by event. Runs are
deterministic (``derandomize``, no example database) and nothing is ``assume()``d away.
"""

from __future__ import annotations

import json
import tempfile
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI, event_stream, json_answer

T = TypeVar("T")

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
CHAT = "/v1/chat/completions"
CALL_TIMEOUT_S = 10.0
EXAMPLES = 40
# The model each provider is reached by (routing by prefix), and which the fake answers as.
MODELS = {"openai": "gpt-4o", "deepseek": "deepseek-chat", "grok": "grok-4"}

# Every key the gateway reads or edits, or the fake judges, at any level of a request or answer.
RESERVED = frozenset(
    {
        # answer, top level
        *("id", "object", "created", "model", "choices", "usage", "error"),
        *("system_fingerprint", "service_tier", "obfuscation"),
        # choice, message and delta, tool call
        *("index", "message", "delta", "finish_reason", "logprobs"),
        *("role", "content", "refusal", "annotations", "audio", "tool_calls", "function_call"),
        *("reasoning_content", "reasoning", "name", "tool_call_id"),
        *("type", "function", "custom", "arguments", "input"),
        # usage
        *("prompt_tokens", "completion_tokens", "total_tokens"),
        *("prompt_tokens_details", "completion_tokens_details", "cached_tokens"),
        *("reasoning_tokens", "audio_tokens", "accepted_prediction_tokens"),
        *("rejected_prediction_tokens", "prompt_cache_hit_tokens", "prompt_cache_miss_tokens"),
        *("num_sources_used", "cost_in_usd_ticks"),
        # request
        *("messages", "stream", "stream_options", "include_usage", "include_obfuscation"),
        *("max_tokens", "max_completion_tokens", "n", "temperature", "tools", "tool_choice"),
    }
)

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "llm-proxy-hypothesis")
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
    max_examples=EXAMPLES,
)


# ---------------------------------------------------------------------------------------------
# Strategies

# Valid JSON text: no lone surrogates (they are not UTF-8), every other code point allowed.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
# A key at a level the gateway reads: never one it reads or edits there.
KEYS = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=10).filter(
    lambda key: key not in RESERVED
)
EXTRAS = st.dictionaries(KEYS, JSON_VALUES, max_size=3)


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer drawn with unknown keys at each level."""

    provider: str
    top: dict[str, Any]
    choice: dict[str, Any]
    message: dict[str, Any]
    tool_call: dict[str, Any] | None  # None: a text answer
    function: dict[str, Any]
    usage: dict[str, Any]
    request_top: dict[str, Any]
    request_message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    """One content or tool-call chunk drawn with unknown keys at each level."""

    top: dict[str, Any]
    choice: dict[str, Any]
    delta: dict[str, Any]
    tool_call: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Stream:
    """A streamed answer: chunks, a finish chunk, the usage chunk, each with unknown keys."""

    provider: str
    include_usage: bool
    events: list[Event]
    finish_top: dict[str, Any]
    usage_top: dict[str, Any]
    usage: dict[str, Any]
    request_top: dict[str, Any]


PROVIDERS = st.sampled_from(sorted(MODELS))
ANSWERS = st.builds(
    Answer,
    provider=PROVIDERS,
    top=EXTRAS,
    choice=EXTRAS,
    message=EXTRAS,
    tool_call=st.none() | EXTRAS,
    function=EXTRAS,
    usage=EXTRAS,
    request_top=EXTRAS,
    request_message=EXTRAS,
)
EVENTS = st.builds(Event, top=EXTRAS, choice=EXTRAS, delta=EXTRAS, tool_call=st.none() | EXTRAS)
STREAMS = st.builds(
    Stream,
    provider=PROVIDERS,
    include_usage=st.booleans(),
    events=st.lists(EVENTS, min_size=1, max_size=4),
    finish_top=EXTRAS,
    usage_top=EXTRAS,
    usage=EXTRAS,
    request_top=EXTRAS,
)


# ---------------------------------------------------------------------------------------------
# The upstream's answers built from a drawn example


def usage_object(extra: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage with zero reasoning and the cache counted where OpenAI counts it, so xAI's
    and DeepSeek's normalisations have nothing to change."""
    return {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        **extra,
    }


def whole_answer(example: Answer) -> dict[str, Any]:
    """The chat.completion the fake sends for ``example``."""
    message: dict[str, Any] = {"role": "assistant", "content": "Paris.", "refusal": None}
    finish = "stop"
    if example.tool_call is not None:
        function = {"name": "get_weather", "arguments": '{"city":"Paris"}', **example.function}
        call = {"id": "call_1", "type": "function", "function": function, **example.tool_call}
        message |= {"content": None, "tool_calls": [call]}
        finish = "tool_calls"
    choice = {
        "index": 0,
        "message": message | example.message,
        "logprobs": None,
        "finish_reason": finish,
        **example.choice,
    }
    return {
        "id": "chatcmpl-property",
        "object": "chat.completion",
        "created": 1700000123,
        "model": MODELS[example.provider],
        "choices": [choice],
        "usage": usage_object(example.usage),
        "system_fingerprint": "fp_property",
        **example.top,
    }


def chunk(model: str, choices: list[Any], top: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI sends it when usage is asked for (the gateway asks)."""
    return {
        "id": "chatcmpl-property",
        "object": "chat.completion.chunk",
        "created": 1700000123,
        "model": model,
        "system_fingerprint": "fp_property",
        "choices": choices,
        "usage": None,
        **top,
    }


def stream_events(example: Stream) -> list[dict[str, Any]]:
    """The events the fake sends for ``example`` (before [DONE])."""
    model = MODELS[example.provider]
    events: list[dict[str, Any]] = []
    finish = "stop"
    for i, drawn in enumerate(example.events):
        delta: dict[str, Any] = {"content": f"word{i} "}
        if i == 0:
            delta["role"] = "assistant"
        if drawn.tool_call is not None:
            finish = "tool_calls"
            function: dict[str, Any] = {"arguments": "{}"}
            if i == 0:
                function["name"] = "get_weather"
            call = {"index": 0, "function": function, **drawn.tool_call}
            if i == 0:
                call |= {"id": "call_1", "type": "function"}
            delta = {"content": None, "tool_calls": [call]} | (
                {"role": "assistant"} if i == 0 else {}
            )
        choice = {
            "index": 0,
            "delta": delta | drawn.delta,
            "logprobs": None,
            "finish_reason": None,
            **drawn.choice,
        }
        events.append(chunk(model, [choice], drawn.top))
    last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
    events.append(chunk(model, [last], example.finish_top))
    usage = chunk(model, [], example.usage_top)
    usage["usage"] = usage_object(example.usage)
    events.append(usage)
    return events


def owed_to_client(events: list[dict[str, Any]], include_usage: bool) -> list[dict[str, Any]]:
    """What the client is owed of ``events``: all of them when it asked for usage; otherwise
    neither the usage-only chunk nor each chunk's ``"usage": null``."""
    if include_usage:
        return events
    return [
        {key: value for key, value in event.items() if key != "usage"}
        for event in events
        if event["choices"]
    ]


# ---------------------------------------------------------------------------------------------
# Running a property against one gateway


async def hypothesize(
    strategy: st.SearchStrategy[T], check: Callable[[T], Awaitable[None]], *, label: str
) -> None:
    """Run ``check`` on examples drawn from ``strategy``, each in this trio loop."""

    @SETTINGS
    @seed(zlib.crc32(label.encode()))
    @given(strategy)
    def prop(value: T) -> None:
        trio.from_thread.run(check, value)

    await trio.to_thread.run_sync(prop)


@pytest.fixture
async def compat_gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    """The gateway with its three OpenAI-compatible providers on one fake upstream, unlimited."""
    provider = {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY, "timeout_s": 5}
    return await start_gateway(
        {
            "limits": {"default_client_requests_per_minute": 0},
            "providers": {"openai": provider, "deepseek": provider, "grok": provider},
        }
    )


def sse_data(body: bytes) -> list[bytes]:
    """The data of each SSE event of the gateway's answer, in order."""
    found: list[bytes] = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line.startswith(b"data:")]
        if lines:
            found.append(b"\n".join(line[5:].removeprefix(b" ") for line in lines))
    return found


# ---------------------------------------------------------------------------------------------
# The properties


async def test_unknown_keys_in_whole_answers_and_requests_pass_unchanged(
    compat_gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    async with httpx.AsyncClient(base_url=compat_gateway.base_url, timeout=10) as client:

        async def check(example: Answer) -> None:
            answer = whole_answer(example)
            fake_openai.enqueue(json_answer(answer))
            message = {"role": "user", "content": "Where?", **example.request_message}
            request = {
                "model": MODELS[example.provider],
                "messages": [message],
                **example.request_top,
            }
            with trio.fail_after(CALL_TIMEOUT_S):
                reply = await client.post(CHAT, json=request, headers=AUTH)
            assert reply.status_code == 200, reply.text
            assert fake_openai.received[-1].body == request
            assert reply.json() == answer
            if example.provider == "openai":  # no edit owed: the very bytes
                assert reply.content == fake_openai.sent[-1].body

        await hypothesize(ANSWERS, check, label="whole answers")


async def test_unknown_keys_in_stream_events_and_requests_pass_unchanged(
    compat_gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    async with httpx.AsyncClient(base_url=compat_gateway.base_url, timeout=10) as client:

        async def check(example: Stream) -> None:
            events = stream_events(example)
            fake_openai.enqueue(event_stream(*events))
            request: dict[str, Any] = {
                "model": MODELS[example.provider],
                "messages": [{"role": "user", "content": "Where?"}],
                "stream": True,
                **example.request_top,
            }
            if example.include_usage:
                request["stream_options"] = {"include_usage": True}
            with trio.fail_after(CALL_TIMEOUT_S):
                reply = await client.post(CHAT, json=request, headers=AUTH)
            assert reply.status_code == 200, reply.text
            upstream = fake_openai.received[-1].body
            assert upstream == request | {"stream_options": {"include_usage": True}}
            *data, done = sse_data(reply.content)
            assert done == b"[DONE]", reply.content
            assert [json.loads(d) for d in data] == owed_to_client(events, example.include_usage)
            if example.provider == "openai" and example.include_usage:  # no edit owed
                assert data == fake_openai.sent[-1].event_data()[:-1]

        await hypothesize(STREAMS, check, label="stream events")
