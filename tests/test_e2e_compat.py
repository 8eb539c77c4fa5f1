"""DeepSeek and xAI through the openai_compat adapter: their quirks normalised for the client."""

from __future__ import annotations

import openai
import pytest

from proxy.service import RunningService
from tests.conftest import StartGateway, logged, sdk
from tests.fakes.compat_upstreams import (
    deepseek_completion,
    deepseek_error,
    deepseek_stream,
    xai_bad_key,
    xai_completion,
    xai_reasoning_effort_rejected,
    xai_stream,
)
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI

HELLO = [{"role": "user", "content": "Which is larger, 9.11 or 9.8?"}]


@pytest.fixture
async def deepseek(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    return await start_gateway(
        {"providers": {"deepseek": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY}}}
    )


@pytest.fixture
async def grok(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    return await start_gateway(
        {"providers": {"grok": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY}}}
    )


async def test_deepseek_stream_reasoning_keepalives_and_cache_hits(
    deepseek: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(deepseek_stream())
    stream = await sdk(deepseek).chat.completions.create(
        model="deepseek-reasoner",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    reasoning = content = ""
    usage = None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
            content += choice.delta.content or ""
    assert reasoning == "Compare 9.11 and 9.8."
    assert content == "9.8 is larger."
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 8
    # DeepSeek's own counters pass through beside OpenAI's.
    assert usage.model_dump()["prompt_cache_hit_tokens"] == 8
    (row,) = await logged(deepseek)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (12, 90, 8)
    assert row["reasoning_tokens"] == 80
    assert row["provider"] == "deepseek"


async def test_deepseek_blank_line_padding_and_reasoning_on_the_message(
    deepseek: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(deepseek_completion())
    completion = await sdk(deepseek).chat.completions.create(
        model="deepseek-reasoner", messages=HELLO
    )
    message = completion.choices[0].message
    assert message.content == "9.8 is larger."
    assert getattr(message, "reasoning_content", None) == "Compare 9.11 and 9.8."
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 16


async def test_deepseek_keeps_reasoning_content_on_tool_call_turns(
    deepseek: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(deepseek_completion(tool_call=True))
    client = sdk(deepseek)
    first = await client.chat.completions.create(model="deepseek-reasoner", messages=HELLO)
    assistant = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    follow_up = [
        *HELLO,
        assistant.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "call_ds_1", "content": '{"temp_c": 18}'},
    ]
    await client.chat.completions.create(model="deepseek-reasoner", messages=follow_up)
    sent = fake_openai.received[-1].body["messages"][1]
    # DeepSeek answers 400 when reasoning is missing from a tool-call turn it made.
    assert sent["reasoning_content"] == "Compare 9.11 and 9.8."
    assert sent["tool_calls"][0]["id"] == "call_ds_1"


async def test_deepseek_insufficient_system_resource_is_not_a_clean_end(
    deepseek: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(deepseek_stream(finish="insufficient_system_resource"))
    stream = await sdk(deepseek).chat.completions.create(
        model="deepseek-chat", messages=HELLO, stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        async for _ in stream:
            pass
    assert "insufficient_system_resource" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "exception", "gateway_status"),
    [(402, openai.InternalServerError, 503), (422, openai.BadRequestError, 400)],
)
async def test_deepseek_402_and_422(
    deepseek: RunningService,
    fake_openai: FakeOpenAI,
    status: int,
    exception: type[openai.APIStatusError],
    gateway_status: int,
) -> None:
    fake_openai.enqueue(deepseek_error(status, "Insufficient Balance"))
    with pytest.raises(exception) as caught:
        await sdk(deepseek).chat.completions.create(model="deepseek-chat", messages=HELLO)
    assert caught.value.status_code == gateway_status


async def test_xai_completion_tokens_include_reasoning(
    grok: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(xai_completion())
    completion = await sdk(grok).chat.completions.create(model="grok-4.3", messages=HELLO)
    usage = completion.usage
    assert usage is not None
    # The docs example: 26 prompt + 168 completion + 304 reasoning = 498 total.
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (26, 472, 498)
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 304
    (row,) = await logged(grok)
    assert row["completion_tokens"] == 472
    assert row["cost_usd"] is not None


async def test_xai_stream_usage_normalised(grok: RunningService, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(xai_stream())
    stream = await sdk(grok).chat.completions.create(
        model="grok-4.3", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 472


async def test_xai_bad_key_is_the_gateways_problem_not_the_clients(
    grok: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(xai_bad_key())
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(grok).chat.completions.create(model="grok-4.3", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth_failed"


async def test_xai_rejected_parameter_is_the_clients_400(
    grok: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(xai_reasoning_effort_rejected())
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(grok).chat.completions.create(
            model="grok-4.3", messages=HELLO, reasoning_effort="high"
        )
    assert "reasoningEffort" in caught.value.message
