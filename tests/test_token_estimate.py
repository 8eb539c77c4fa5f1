"""The tokens a call reserves at admission: the prompt's estimate plus what it may answer."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from proxy.chat import ChatRequest, decode_chat_request
from proxy.token_estimate import (
    IMAGE_TOKENS,
    LOW_DETAIL_IMAGE_TOKENS,
    estimate_prompt_tokens,
    tokens_to_reserve,
)


def request(content: Any = "hello", **fields: Any) -> tuple[ChatRequest, int]:
    body = msgspec.json.encode(
        {"model": "m", "messages": [{"role": "user", "content": content}], **fields}
    )
    return decode_chat_request(body), len(body)


def test_text_counts_a_token_per_four_bytes_of_body_rounded_up() -> None:
    decoded, size = request("x" * 400)
    assert estimate_prompt_tokens(decoded, size) == -(-size // 4)
    assert estimate_prompt_tokens(decoded, size) >= 100


def test_inline_data_counts_a_fixed_number_of_tokens_not_its_length() -> None:
    data_url = "data:image/png;base64," + base64.b64encode(bytes(300_000)).decode()
    parts = [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==" * 1000, "format": "wav"}},
    ]
    decoded, size = request(parts)
    text_only = size - len(data_url) - len("https://example.com/a.png") - 8000
    expected = -(-text_only // 4) + IMAGE_TOKENS + LOW_DETAIL_IMAGE_TOKENS + IMAGE_TOKENS
    assert estimate_prompt_tokens(decoded, size) == expected
    assert expected < 2000


def test_the_answer_is_max_completion_tokens_else_max_tokens_times_n() -> None:
    decoded, size = request(max_tokens=100, max_completion_tokens=30, n=2)
    prompt = estimate_prompt_tokens(decoded, size)
    assert tokens_to_reserve(decoded, size, default_completion=1024, tokens_per_minute=50) == (
        prompt + 60
    )
    decoded, size = request(max_tokens=100)
    prompt = estimate_prompt_tokens(decoded, size)
    assert tokens_to_reserve(decoded, size, default_completion=1024, tokens_per_minute=10) == (
        prompt + 100
    )


def test_without_max_tokens_the_default_is_cut_to_what_the_budget_holds() -> None:
    decoded, size = request()
    prompt = estimate_prompt_tokens(decoded, size)
    reserve = tokens_to_reserve
    assert reserve(decoded, size, default_completion=1024, tokens_per_minute=100_000) == (
        prompt + 1024
    )
    assert reserve(decoded, size, default_completion=1024, tokens_per_minute=prompt + 5) == (
        prompt + 5
    )
    # A prompt larger than the budget stays what it is: the limiter refuses it as too large.
    assert reserve(decoded, size, default_completion=1024, tokens_per_minute=3) == prompt
