"""The ``/v1/messages`` body for a translated chat call (reference §8).

Built from the internal chat form field by field. Every field of the client's body is translated
here or refused with a 400 naming it (:data:`TRANSLATED`,
:func:`proxy.providers.base.refuse_untranslated`): the Messages API refuses unknown fields, so
nothing is forwarded as is. The choices where OpenAI's and Anthropic's meanings differ:

- ``max_tokens`` is required upstream: without the client's, the model family's largest answer
  (:func:`default_max_tokens`), which is what "no limit" means on OpenAI's side.
- ``temperature`` is 0–2 at OpenAI and 0–1 at Anthropic: above 1 is a 400 naming it (scaling it
  would silently change what the client asked for). ``temperature`` and ``top_p`` both go up when
  both are sent; the newest models refuse the pair, and their 400 says so.
- ``reasoning_effort`` turns on extended thinking with a budget per effort
  (:data:`THINKING_BUDGETS`; ``none`` leaves it off). The budget must stay below
  ``max_tokens``: a smaller ``max_tokens`` is raised by the budget (within the model's largest
  answer, which also caps the budget), so the client's cap still bounds the visible answer.
  Thinking requires the default ``temperature`` and ``top_p``, so the client's are dropped,
  and allows no forced tool: ``tool_choice`` ``required`` or a named tool with it is a 400
  naming ``tool_choice``.
- ``response_format`` ``json_schema`` becomes ``output_config.format`` (structured outputs);
  ``json_object`` has no equivalent without a schema and is refused by name.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from proxy.chat import ChatRequest
from proxy.chat_form import (
    AudioPart,
    ChatBody,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    RefusalPart,
    TextPart,
    Tool,
)
from proxy.data_url import DataURL, is_data_url, parse_data_url
from proxy.errors import InvalidRequest
from proxy.providers.anthropic_thinking import ThinkingMemory, blocks_sent
from proxy.providers.base import UNREADABLE, refuse_untranslated
from proxy.providers.translated_fields import require_text_output
from proxy.request_body import MAX_DEPTH, json_depth

#: The fields of an OpenAI chat body this translator carries to Claude: ``n`` and ``logprobs``
#: only in their default values, ``modalities`` only as text; ``user`` goes to
#: ``metadata.user_id`` (the other tuning fields are dropped, see TUNING_FIELDS).
TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "n",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "modalities",
        "logprobs",
    }
)

#: Thinking budgets (tokens) per OpenAI ``reasoning_effort``; 1024 is Claude's smallest.
THINKING_BUDGETS = {
    "minimal": 1024,
    "low": 4096,
    "medium": 10_000,
    "high": 24_576,
    "xhigh": 32_000,
    "max": 48_000,
}
MIN_THINKING_BUDGET = 1024
#: The largest answer of each model family (Anthropic's models overview), by id prefix, most
#: specific first; newer families answer at least the last entry's.
_MAX_OUTPUT = (
    ("claude-3-5-", 8192),
    ("claude-3-7-", 64_000),
    ("claude-3-", 4096),
    ("claude-2", 4096),
    ("claude-instant", 4096),
    ("claude-opus-4-0", 32_000),
    ("claude-opus-4-1", 32_000),
    ("claude-opus-4-2025", 32_000),
    ("claude-", 64_000),
)
DEFAULT_MAX_TOKENS = 64_000
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


def default_max_tokens(model: str) -> int:
    """``max_tokens`` for a call that sets none: the largest answer of ``model``'s family."""
    for prefix, tokens in _MAX_OUTPUT:
        if model.startswith(prefix):
            return tokens
    return DEFAULT_MAX_TOKENS


def build_body(
    request: ChatRequest, model: str, memory: ThinkingMemory, provider: str
) -> dict[str, Any]:
    """The Messages request for ``request``; a 400 naming any field Claude cannot take."""
    refuse_untranslated(provider, request.raw, TRANSLATED)
    require_text_output(provider, request.raw)
    body = request.form()
    _require_defaults(body)
    system, messages = _messages(body.messages, memory)
    out: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        out["system"] = system
    largest = default_max_tokens(model)
    max_tokens = body.max_completion_tokens or body.max_tokens or largest
    thinking = _thinking(body, largest)
    if thinking is not None:
        budget = thinking["budget_tokens"]
        if max_tokens <= budget:
            # The client's cap still bounds the visible answer, within the model's largest.
            max_tokens = min(max_tokens + budget, largest)
        out["thinking"] = thinking
    out["max_tokens"] = max_tokens
    if body.stop:
        out["stop_sequences"] = [body.stop] if isinstance(body.stop, str) else list(body.stop)
    if body.temperature is not None and thinking is None:
        if not 0 <= body.temperature <= 1:
            raise InvalidRequest(
                f"'temperature' must be between 0 and 1 for Claude (got {body.temperature}); "
                "OpenAI's range goes to 2, Anthropic's to 1.",
                param="temperature",
            )
        out["temperature"] = body.temperature
    if body.top_p is not None and thinking is None:
        out["top_p"] = body.top_p
    if body.tools:
        out["tools"] = [_tool(tool) for tool in body.tools]
    choice = _tool_choice(body, thinking is not None)
    if choice is not None:
        out["tool_choice"] = choice
    if body.response_format is not None:
        output_format = _output_format(body.response_format)
        if output_format is not None:
            out["output_config"] = {"format": output_format}
    if body.user:
        out["metadata"] = {"user_id": body.user}
    if body.stream:
        out["stream"] = True
    return out


def _require_defaults(body: ChatBody) -> None:
    """``n`` and ``logprobs`` are carried only in their default values."""
    if body.n not in (None, 1):
        raise InvalidRequest(
            "Claude gives one answer per call: 'n' must be 1.", param="n", code="unsupported_value"
        )
    if body.logprobs:
        raise InvalidRequest(
            "Claude gives no log probabilities: leave 'logprobs' out.",
            param="logprobs",
            code="unsupported_value",
        )


def _messages(
    messages: list[Message], memory: ThinkingMemory
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System text blocks, and the turns with same-role neighbours merged (tool results first)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        match message.role:
            case "system" | "developer":
                system.extend(_text_blocks(message.content, where, message.role))
            case "user":
                add("user", _user_blocks(message.content, where))
            case "assistant":
                add("assistant", _assistant_blocks(message, where, memory))
            case "tool":
                result = _tool_result(message, where)
                if turns and turns[-1]["role"] == "user":
                    # Claude wants a turn's tool results before anything else in it.
                    content = turns[-1]["content"]
                    at = next(
                        (k for k, b in enumerate(content) if b["type"] != "tool_result"),
                        len(content),
                    )
                    content.insert(at, result)
                else:
                    add("user", [result])
            case "function":
                raise InvalidRequest(
                    "The legacy 'function' role cannot be translated for Claude: send tool "
                    "results as 'tool' messages with their 'tool_call_id'.",
                    param=f"{where}.role",
                )
    return system, turns


def _text_blocks(
    content: str | list[ContentPart] | None, where: str, role: str
) -> list[dict[str, Any]]:
    """Text blocks of a text-only message; empty text is left out (Claude refuses it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, RefusalPart) and role == "assistant":
            blocks.append({"type": "text", "text": part.refusal})
        else:
            raise InvalidRequest(
                f"A {role} message may only contain text parts.", param=f"{where}.content[{j}]"
            )
    return blocks


def _user_blocks(content: str | list[ContentPart] | None, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_blocks(content, where, "user")
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        param = f"{where}.content[{j}]"
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image(part.image_url.url, f"{param}.image_url.url"))
        elif isinstance(part, FilePart):
            blocks.append(_document(part, param))
        elif isinstance(part, AudioPart):
            raise InvalidRequest("Claude takes no audio input.", param=f"{param}.input_audio")
        else:
            raise InvalidRequest("A user message cannot contain a refusal part.", param=param)
    return blocks


def _image(url: str, param: str) -> dict[str, Any]:
    """An image block: inline bytes as base64, an address as a ``url`` source Claude fetches."""
    if not is_data_url(url):
        return {"type": "image", "source": {"type": "url", "url": url}}
    data = _data(url, param)
    if data.media_type not in _IMAGE_TYPES:
        raise InvalidRequest(
            f"Claude reads images of type {', '.join(sorted(_IMAGE_TYPES))}, "
            f"not {data.media_type or 'an untyped data URL'!r}.",
            param=param,
        )
    source = {"type": "base64", "media_type": data.media_type, "data": data.base64_payload()}
    return {"type": "image", "source": source}


def _document(part: FilePart, param: str) -> dict[str, Any]:
    """A ``file`` part as a document block: a PDF, or plain text."""
    if part.file.file_data is None:
        raise InvalidRequest(
            "Claude takes files inline: send 'file_data' as a data URL, not a file id.",
            param=f"{param}.file",
        )
    data = _data(part.file.file_data, f"{param}.file.file_data")
    block: dict[str, Any]
    if data.media_type == "application/pdf":
        source = {"type": "base64", "media_type": "application/pdf", "data": data.base64_payload()}
        block = {"type": "document", "source": source}
    elif data.media_type == "text/plain":
        text = _plain_text(data.base64_payload(), f"{param}.file.file_data")
        block = {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": text},
        }
    else:
        raise InvalidRequest(
            "Claude reads documents of type application/pdf or text/plain, "
            f"not {data.media_type or 'an untyped data URL'!r}.",
            param=f"{param}.file.file_data",
        )
    if part.file.filename:
        block["title"] = part.file.filename
    return block


def _data(url: str, param: str) -> DataURL:
    try:
        return parse_data_url(url)
    except ValueError as exc:
        raise InvalidRequest(f"'{param}' is not a usable data URL: {exc}.", param=param) from None


def _plain_text(payload: str, param: str) -> str:
    try:
        return base64.b64decode(payload, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(f"'{param}' is not base64 of UTF-8 text.", param=param) from None


def _assistant_blocks(message: Message, where: str, memory: ThinkingMemory) -> list[dict[str, Any]]:
    """Thinking blocks carried back (first, as Claude requires), text, then the tool calls."""
    thinking: list[dict[str, Any]] = []
    uses: list[dict[str, Any]] = []
    for j, call in enumerate(message.tool_calls or ()):
        blocks = blocks_sent(call.extra_content)
        if blocks is None:
            blocks = memory.recall(call.id)
        thinking.extend(blocks or ())
        uses.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": _arguments(
                    call.function.arguments, f"{where}.tool_calls[{j}].function.arguments"
                ),
            }
        )
    return [*thinking, *_text_blocks(message.content, where, "assistant"), *uses]


def _arguments(text: str, param: str) -> dict[str, Any]:
    """A call's JSON arguments as ``tool_use.input``, which must be an object."""
    if not text.strip():
        return {}
    try:
        args = msgspec.json.decode(text)
    except UNREADABLE:
        raise InvalidRequest(f"'{param}' is not valid JSON.", param=param) from None
    if json_depth(args) > MAX_DEPTH:
        raise InvalidRequest(f"'{param}' is nested too deeply.", param=param)
    if not isinstance(args, dict):
        raise InvalidRequest(f"'{param}' must be a JSON object for Claude.", param=param)
    return args


def _tool_result(message: Message, where: str) -> dict[str, Any]:
    if not message.tool_call_id:
        raise InvalidRequest("A tool message needs 'tool_call_id'.", param=f"{where}.tool_call_id")
    blocks = _text_blocks(message.content, where, "tool")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if blocks:
        result["content"] = blocks[0]["text"] if len(blocks) == 1 else blocks
    return result


def _tool(tool: Tool) -> dict[str, Any]:
    function = tool.function
    out: dict[str, Any] = {"name": function.name}
    if function.description:
        out["description"] = function.description
    # input_schema is required; OpenAI allows a function without parameters.
    out["input_schema"] = function.parameters or {"type": "object", "properties": {}}
    if function.strict is not None:
        out["strict"] = function.strict
    return out


def _tool_choice(body: ChatBody, thinking: bool) -> dict[str, Any] | None:
    choice = body.tool_choice
    if choice is None:
        if body.parallel_tool_calls is False and body.tools:
            return {"type": "auto", "disable_parallel_tool_use": True}
        return None
    if isinstance(choice, str):
        out: dict[str, Any] = dict(_TOOL_CHOICES[choice])
    else:
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if choice.get("type") != "function" or not isinstance(name, str) or not name:
            raise InvalidRequest(
                "'tool_choice' must be none, auto, required or "
                '{"type": "function", "function": {"name": ...}}.',
                param="tool_choice",
            )
        out = {"type": "tool", "name": name}
    if thinking and out["type"] in ("any", "tool"):
        raise InvalidRequest(
            "Claude cannot be made to call a tool while it thinks: with 'reasoning_effort', "
            "'tool_choice' must be auto or none.",
            param="tool_choice",
        )
    if body.parallel_tool_calls is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _output_format(response_format: dict[str, Any]) -> dict[str, Any] | None:
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "'response_format.json_schema.schema' must be a JSON Schema object.",
                param="response_format.json_schema.schema",
            )
        return {"type": "json_schema", "schema": schema}
    if kind == "json_object":
        raise InvalidRequest(
            "Claude has no JSON mode without a schema: use response_format "
            '{"type": "json_schema", ...}.',
            param="response_format.type",
            code="unsupported_value",
        )
    raise InvalidRequest(
        f"Unsupported response_format type {kind!r}: use text or json_schema.",
        param="response_format.type",
    )


def _thinking(body: ChatBody, largest: int) -> dict[str, Any] | None:
    """Extended thinking for the effort, its budget leaving room for an answer of at least
    1024 tokens within the model's ``largest``."""
    effort = body.reasoning_effort
    if effort is None or effort == "none":
        return None
    budget = THINKING_BUDGETS.get(effort)
    if budget is None:
        choices = ", ".join(["none", *THINKING_BUDGETS])
        raise InvalidRequest(
            f"Unsupported reasoning_effort {effort!r}: use one of {choices}.",
            param="reasoning_effort",
        )
    budget = max(MIN_THINKING_BUDGET, min(budget, largest - MIN_THINKING_BUDGET))
    return {"type": "enabled", "budget_tokens": budget}
