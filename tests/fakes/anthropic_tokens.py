"""The fake Anthropic's deterministic token counts, so tests can predict every usage figure.

The rule (the same for `count_tokens` and a message's `usage.input_tokens`): whitespace-separated
words of
- the `system` prompt (a string, or its text blocks),
- every message's text: a string content, `text` blocks, `thinking` blocks' thinking,
  `tool_result` content (a string, or its text blocks), and each `tool_use`/`server_tool_use`
  input as compact JSON,
- every tool's `name` and `description`,
plus 1 for each image, document or other non-text input block (a `redacted_thinking` too).

Output tokens: the words of the answer's text, thinking and tool inputs (compact JSON), at
least 1 (an empty answer still costs a token, as the API's does).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from .text import word_count

__all__ = ["input_tokens", "json_words"]


def input_tokens(body: dict[str, Any]) -> int:
    """The fake's input-token count of a Messages (or count_tokens) body."""
    total = sum(word_count(text) for text in _system_texts(body.get("system")))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            total += _content_tokens(message.get("content"))
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            for key in ("name", "description"):
                value = tool.get(key)
                total += word_count(value) if isinstance(value, str) else 0
    return total


def json_words(value: Any) -> int:
    """Words of a value as compact JSON (how tool inputs are counted)."""
    return word_count(msgspec.json.encode(value).decode())


def _system_texts(system: Any) -> Iterator[str]:
    """The texts of a `system` prompt."""
    if isinstance(system, str):
        yield system
    elif isinstance(system, list):
        for block in system:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                yield block["text"]


def _content_tokens(content: Any) -> int:
    """Tokens of one message's content (or a tool_result's)."""
    if isinstance(content, str):
        return word_count(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            total += word_count(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            total += word_count(block["thinking"])
        elif kind in ("tool_use", "server_tool_use"):
            total += json_words(block.get("input"))
        elif kind == "tool_result":
            total += _content_tokens(block.get("content"))
        else:
            total += 1
    return total
