"""End to end, the official openai SDK → the gateway → a fake Ollama: logprobs translated (whole
and streamed), fields Ollama cannot honour refused by name, and OpenAI's exact answer shape."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from proxy.service import RunningService
from tests.conftest import StartGateway, logged, sdk
from tests.fakes.ollama_upstream import FakeOllama, Reply
from tests.fakes.text import expected_logprobs

MODEL = "ollama/llama3.2"
HELLO = [{"role": "user", "content": "hello there gateway"}]
ANSWER = ["Grüße", " aus", " Ollama"]


@pytest.fixture
async def gateway(start_gateway: StartGateway, fake_ollama: FakeOllama) -> RunningService:
    """The gateway with its ollama provider pointed at the fake server."""
    return await start_gateway(
        {"providers": {"ollama": {"base_url": fake_ollama.base_url, "timeout_s": 5}}}
    )


def chat_requests(fake: FakeOllama) -> list[Any]:
    """Bodies of the chat calls the fake received (it is also asked for its model list)."""
    return [r.body for r in fake.received if r.path == "/api/chat"]


async def test_logprobs_of_a_whole_answer(gateway: RunningService, fake_ollama: FakeOllama) -> None:
    fake_ollama.enqueue(Reply(text="".join(ANSWER)))
    completion = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, logprobs=True, top_logprobs=2
    )
    sent = chat_requests(fake_ollama)[-1]
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    (choice,) = completion.choices
    assert choice.logprobs is not None
    assert choice.logprobs.model_dump() == {
        "content": expected_logprobs(ANSWER, 0, 2),
        "refusal": None,
    }


async def test_logprobs_stream_with_their_tokens(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.enqueue(Reply(text="".join(ANSWER)))
    stream = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, logprobs=True, stream=True
    )
    chunks = [chunk async for chunk in stream]
    sent = chat_requests(fake_ollama)[-1]
    assert sent["logprobs"] is True
    assert "top_logprobs" not in sent
    with_text = [c.choices[0] for c in chunks if c.choices and c.choices[0].delta.content]
    assert [c.delta.content for c in with_text] == ANSWER
    for i, choice in enumerate(with_text):
        assert choice.logprobs is not None
        assert choice.logprobs.model_dump() == {
            "content": expected_logprobs([ANSWER[i]], i, 0),
            "refusal": None,
        }


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 3}, "n"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
async def test_a_field_ollama_cannot_honour_is_a_400_naming_it(
    gateway: RunningService, fake_ollama: FakeOllama, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, **fields)
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["code"]) == (param, "unsupported_parameter")
    assert chat_requests(fake_ollama) == []  # refused before any upstream call
    (row,) = await logged(gateway)
    assert (row["status"], row["http_status"]) == ("error", 400)


async def test_an_answer_in_openais_exact_shape(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    before = int(time.time())
    raw = await sdk(gateway).chat.completions.with_raw_response.create(
        model=MODEL, messages=HELLO, n=1
    )
    body = raw.http_response.json()
    # Ollama's created_at, when it made the answer.
    assert before <= body["created"] <= int(time.time())
    assert body["object"] == "chat.completion"
    assert "system_fingerprint" in body
    (choice,) = body["choices"]
    assert choice["message"] == {
        "role": "assistant",
        "content": "echo: hello there gateway",
        "refusal": None,
        "annotations": [],
    }
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert body["usage"]["completion_tokens_details"] == {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    }
