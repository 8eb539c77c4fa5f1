"""End to end, the official openai SDK → the gateway → a fake Gemini: logprobs translated (whole
and streamed), a field Gemini cannot take refused by name, and OpenAI's exact answer shape."""

from __future__ import annotations

import time

import openai
import pytest

from proxy.service import RunningService
from tests.conftest import StartGateway, logged, sdk
from tests.fakes.gemini_upstream import DEFAULT_API_KEY, Echo, FakeGemini
from tests.fakes.text import expected_logprobs

MODEL = "gemini-2.5-flash"
HELLO = [{"role": "user", "content": "hello there gemini"}]
ANSWER = ["Grüße ", "aus ", "Gemini"]


@pytest.fixture
async def gateway(start_gateway: StartGateway, fake_gemini: FakeGemini) -> RunningService:
    """The gateway with only its gemini provider, pointed at the fake."""
    return await start_gateway(
        {
            "providers": {
                "gemini": {"base_url": fake_gemini.base_url, "api_key": DEFAULT_API_KEY},
                "ollama": {"enabled": False},
            }
        }
    )


async def test_logprobs_of_a_whole_answer(gateway: RunningService, fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(Echo(text="".join(ANSWER)))
    completion = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, logprobs=True, top_logprobs=3
    )
    config = fake_gemini.received[-1].body["generationConfig"]
    assert config == {"responseLogprobs": True, "logprobs": 3}
    (choice,) = completion.choices
    assert choice.logprobs is not None
    assert choice.logprobs.model_dump() == {
        "content": expected_logprobs(ANSWER, 0, 3),
        "refusal": None,
    }


async def test_logprobs_stream_with_their_tokens(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(Echo(text="".join(ANSWER)))
    stream = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, logprobs=True, stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert fake_gemini.received[-1].body["generationConfig"] == {"responseLogprobs": True}
    with_text = [c.choices[0] for c in chunks if c.choices and c.choices[0].delta.content]
    assert [c.delta.content for c in with_text] == ANSWER
    # Each chunk carries the logprobs of its own tokens, nothing more.
    for i, choice in enumerate(with_text):
        assert choice.logprobs is not None
        assert choice.logprobs.model_dump() == {
            "content": expected_logprobs([ANSWER[i]], i, 0),
            "refusal": None,
        }


async def test_a_field_gemini_cannot_take_is_a_400_naming_it(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).chat.completions.create(
            model=MODEL, messages=HELLO, logit_bias={"50256": -100}
        )
    assert caught.value.status_code == 400
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "logit_bias"
    assert error["code"] == "unsupported_parameter"
    assert "logit_bias" in error["message"]
    assert fake_gemini.received == []  # refused before any upstream call
    (row,) = await logged(gateway)
    assert (row["status"], row["http_status"]) == ("error", 400)


async def test_an_answer_in_openais_exact_shape(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    before = int(time.time())
    raw = await sdk(gateway).chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
    body = raw.http_response.json()
    assert before <= body["created"] <= int(time.time())
    assert body["object"] == "chat.completion"
    assert "system_fingerprint" in body
    (choice,) = body["choices"]
    assert choice["message"] == {
        "role": "assistant",
        "content": "echo: hello there gemini",
        "refusal": None,
        "annotations": [],
    }
    assert choice["logprobs"] is None
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert body["usage"]["completion_tokens_details"] == {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    }
    completion = raw.parse()
    assert completion.usage is not None
    details = completion.usage.prompt_tokens_details
    assert details is not None
    # Without the zero the SDK reads None, and client code dividing by it breaks.
    assert details.cached_tokens is not None
    assert details.cached_tokens / completion.usage.prompt_tokens == 0.0
