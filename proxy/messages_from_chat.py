"""A chat answer as an Anthropic Messages response, for providers that speak only chat
(anthropic-messages.md §3 and §8).

Content blocks in the order Claude gives them: a ``thinking`` block carrying the provider's
reasoning, a ``text`` block, one ``tool_use`` block per tool call. The block builders here are
shared with the event stream (:mod:`proxy.messages_events`), so a streamed answer ends in the
same message as the same answer not streamed.

Choices made where the two protocols differ:

- A thinking block's ``signature`` is ``""``: the gateway has no signature to give (Claude's are
  Anthropic's cryptographic proof), the SDK takes an empty string, and the empty signature marks
  the block as this gateway's when a client sends it back (:mod:`proxy.messages_blocks` hands it
  to the provider as ``reasoning_content``; a block with Claude's signature is dropped).
- A tool call keeps the provider's call id, so the next turn's ``tool_result`` maps back to it;
  a call without one (or repeating one) gets a fresh ``toolu_…``. Its arguments must be a JSON
  object (an empty string is ``{}``): anything else is a 502 naming the tool, since Claude's
  ``input`` is always an object and the SDK cannot parse anything else (a stream of it would
  fail in the SDK's own accumulator).
- ``finish_reason``: ``length`` → ``max_tokens``, ``content_filter`` or a refusal →
  ``refusal``, tool calls → ``tool_use``, anything else → ``end_turn``. Chat does not say
  whether a stop sequence ended the answer (the matched text is cut), so ``stop_sequence`` is
  never reported.
- Usage: ``input_tokens`` = prompt − cached, ``cache_read_input_tokens`` = cached,
  ``cache_creation_input_tokens`` 0 (no chat provider reports cache writes), ``output_tokens``
  = completion tokens (reasoning included, as Claude counts thinking), and its reasoning part as
  ``output_tokens_details.thinking_tokens``.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping
from typing import Any

from proxy.chat import ChatResponse, Usage
from proxy.errors import UpstreamError

_ALPHABET = string.ascii_letters + string.digits


def _base62(count: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(count))


def new_message_id() -> str:
    """A fresh message id in Anthropic's form: ``msg_01`` and 22 base62 characters."""
    return "msg_01" + _base62(22)


def new_tool_use_id() -> str:
    """A fresh tool-use id in Anthropic's form: ``toolu_01`` and 22 base62 characters."""
    return "toolu_01" + _base62(22)


def unique_tool_use_id(call_id: str | None, taken: set[str]) -> str:
    """``call_id``, or a fresh ``toolu_…`` when the upstream gave none or repeated one in this
    answer: the client answers each call by its id."""
    if not call_id or call_id in taken:
        call_id = new_tool_use_id()
    taken.add(call_id)
    return call_id


def message_usage(usage: Usage | None) -> dict[str, Any]:
    """Chat usage in Anthropic's meaning (input excludes what was read from the cache); zeros
    when the provider reported none (the field is required)."""
    prompt = usage.prompt_tokens if usage else 0
    cached = min(usage.cached_tokens, prompt) if usage else 0
    return {
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": usage.completion_tokens if usage else 0,
        "output_tokens_details": {"thinking_tokens": usage.reasoning_tokens if usage else 0},
    }


def stop_reason(finish_reason: str | None, *, tool_calls: bool, refused: bool) -> str:
    """The ``stop_reason`` for a chat finish reason (see the module docstring)."""
    if finish_reason == "length":
        return "max_tokens"
    if finish_reason == "content_filter" or refused:
        return "refusal"
    if tool_calls or finish_reason in ("tool_calls", "function_call"):
        return "tool_use"
    return "end_turn"


def stop_details(reason: str) -> dict[str, Any] | None:
    """``stop_details`` for a stop reason: a refusal without a category (chat names none)."""
    if reason == "refusal":
        return {"type": "refusal", "category": None, "explanation": None}
    return None


def shows_thinking(raw_request: Mapping[str, Any]) -> bool:
    """Whether the client wants the thinking text (``thinking.display: "omitted"`` keeps the
    blocks but empties them, as Claude does)."""
    thinking = raw_request.get("thinking")
    return not (isinstance(thinking, dict) and thinking.get("display") == "omitted")


def thinking_block(text: str) -> dict[str, Any]:
    """A ``thinking`` block with the gateway's empty signature."""
    return {"type": "thinking", "thinking": text, "signature": ""}


def text_block(text: str) -> dict[str, Any]:
    """A ``text`` block."""
    return {"type": "text", "text": text}


def tool_use_block(call_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    """A ``tool_use`` block."""
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def tool_input(arguments: str, name: str) -> dict[str, Any]:
    """A tool call's arguments as Claude's ``input`` object; a 502 when they are not one."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamError(
            f"The model called the tool {name!r} with arguments that are not a JSON object, "
            "which a Messages client cannot take; retry the request.",
            code="invalid_tool_arguments",
        )
    return value


def build_message(
    *,
    message_id: str,
    model: str,
    content: list[dict[str, Any]],
    reason: str | None,
    usage: dict[str, Any],
) -> dict[str, Any]:
    """A Messages response object (§3)."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "stop_details": stop_details(reason) if reason else None,
        "usage": usage,
    }


def message_object(
    chat_response: ChatResponse, raw_request: Mapping[str, Any], message_id: str, model: str
) -> dict[str, Any]:
    """The Messages response for a chat answer and the Messages body that asked for it."""
    content: list[dict[str, Any]] = []
    finish_reason = None
    refused = has_calls = False
    if chat_response.choices:
        choice = chat_response.choices[0]
        finish_reason = choice.finish_reason
        message = choice.message
        reasoning = message.reasoning_content
        if isinstance(reasoning, str) and reasoning:
            content.append(thinking_block(reasoning if shows_thinking(raw_request) else ""))
        text = (message.content or "") + (message.refusal or "")
        refused = bool(message.refusal)
        if text:
            content.append(text_block(text))
        if isinstance(message.tool_calls, list) and message.tool_calls:
            has_calls = True
            taken: set[str] = set()
            for call in message.tool_calls:
                name = call.function.name
                content.append(
                    tool_use_block(
                        unique_tool_use_id(call.id, taken),
                        name,
                        tool_input(call.function.arguments, name),
                    )
                )
    reason = stop_reason(finish_reason, tool_calls=has_calls, refused=refused)
    return build_message(
        message_id=message_id,
        model=model,
        content=content,
        reason=reason,
        usage=message_usage(chat_response.usage),
    )
