"""Ollama's ``/api/chat`` body for a translated chat call (reference §5.1).

Built from the internal chat form. Every field of the client's body is translated here or
refused with a 400 naming it (:data:`TRANSLATED`); only the tuning fields of
:data:`~proxy.providers.base.TUNING_FIELDS` are dropped. Ollama's own ``options`` and
``keep_alive`` are taken beside OpenAI's fields, so a client that knows it talks to Ollama can
set what OpenAI cannot say (``num_ctx``, say).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from msgspec import Struct

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
    ToolCall,
)
from proxy.errors import InvalidRequest
from proxy.providers.base import UNREADABLE, inline_data, refuse_untranslated
from proxy.providers.logprobs import requested_top_logprobs
from proxy.providers.translated_fields import (
    CHAT_FIELDS,
    require_text_output,
)
from proxy.request_body import MAX_DEPTH, json_depth

#: The fields of an OpenAI chat body this translator carries to Ollama (with Ollama's own
#: ``options`` and ``keep_alive``). ``n``, ``tool_choice`` and ``modalities`` only in the values
#: Ollama honours; ``parallel_tool_calls: false`` is kept by the gateway.
TRANSLATED = CHAT_FIELDS | {"options", "keep_alive"}

# OpenAI's reasoning_effort -> Ollama's think. Ollama has no "minimal": its lowest level that
# still thinks is the closest; "none" turns thinking off.
THINK_LEVELS: Mapping[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "max",
    "max": "max",
}

_decode_any = msgspec.json.Decoder().decode


class OllamaFunctionCall(Struct):
    """A function call on an assistant turn we send: arguments are an object, not a string."""

    name: str
    arguments: dict[str, Any]


class OllamaToolCall(Struct):
    """A tool call on an assistant turn we send."""

    function: OllamaFunctionCall


class OllamaMessage(Struct, omit_defaults=True):
    """One message of an ``/api/chat`` request; ``content`` is always sent."""

    role: str
    content: str
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    thinking: str | None = None


class OllamaChatBody(Struct, omit_defaults=True):
    """An ``/api/chat`` request; ``stream`` has no default so it is always sent explicitly."""

    model: str
    messages: list[OllamaMessage]
    stream: bool
    options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    format: str | dict[str, Any] | None = None
    think: bool | str | None = None
    keep_alive: str | int | float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


def build_body(request: ChatRequest, model: str, provider: str) -> OllamaChatBody:
    """Ollama's ``/api/chat`` body for ``request``; a 400 naming what it cannot express."""
    refuse_untranslated(provider, request.raw, TRANSLATED)
    require_text_output(provider, request.raw)
    body = request.form()
    if body.n is not None and body.n > 1:
        raise InvalidRequest(
            f"Provider {provider} gives one choice per call: 'n' greater than 1 is not supported.",
            param="n",
            code="unsupported_parameter",
        )
    top_logprobs = requested_top_logprobs(body.logprobs, body.top_logprobs)
    keep_alive = request.raw.get("keep_alive")
    if isinstance(keep_alive, bool) or not isinstance(keep_alive, str | int | float | None):
        raise InvalidRequest(
            "'keep_alive' must be a duration string or seconds.", param="keep_alive"
        )
    return OllamaChatBody(
        model=model,
        messages=messages_of(body.messages),
        # Ollama streams unless told otherwise, so the choice is always written out.
        stream=request.stream,
        options=options_of(body, request.raw.get("options")),
        tools=tools_of(body, provider),
        format=format_of(body.response_format),
        think=think_of(body.reasoning_effort),
        keep_alive=keep_alive,
        logprobs=True if top_logprobs is not None else None,
        top_logprobs=top_logprobs or None,
    )


def messages_of(messages: Sequence[Message]) -> list[OllamaMessage]:
    """The conversation; tool results get the name of the call they answer."""
    names: dict[str, str] = {}  # tool call id -> function name, from earlier assistant turns
    translated: list[OllamaMessage] = []
    for i, message in enumerate(messages):
        translated.append(message_of(i, message, names))
        for call in message.tool_calls or ():
            names[call.id] = call.function.name
    return translated


def message_of(i: int, message: Message, names: Mapping[str, str]) -> OllamaMessage:
    """One message; ``names`` maps the tool call ids seen so far to their function names."""
    text, images = content_of(i, message.content)
    match message.role:
        case "system" | "developer":
            return OllamaMessage("system", text, images=images)
        case "user":
            return OllamaMessage("user", text, images=images)
        case "assistant":
            calls = tool_calls_of(i, message.tool_calls) if message.tool_calls else None
            return OllamaMessage(
                "assistant",
                text,
                images=images,
                tool_calls=calls,
                thinking=message.reasoning_content or None,
            )
        case "tool":
            call_id = message.tool_call_id
            # An unknown id is left to Ollama, which accepts a tool turn without a name.
            name = names.get(call_id) if call_id else None
            return OllamaMessage("tool", text, tool_name=name, tool_call_id=call_id)
        case "function":
            # The deprecated function-result turn names its function itself.
            return OllamaMessage("tool", text, tool_name=message.name)


def content_of(i: int, content: str | list[ContentPart] | None) -> tuple[str, list[str] | None]:
    """Text and raw base64 images of a message's content."""
    if content is None:
        return "", None
    if isinstance(content, str):
        return content, None
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        match part:
            case TextPart(text=text):
                texts.append(text)
            case RefusalPart(refusal=refusal):
                texts.append(refusal)
            case ImagePart(image_url=image_url):
                param = f"messages[{i}].content[{j}].image_url"
                images.append(image_base64(image_url.url, param))
            case AudioPart() | FilePart():
                kind = "input_audio" if isinstance(part, AudioPart) else "file"
                raise InvalidRequest(
                    f"Content parts of type '{kind}' are not supported by ollama.",
                    param=f"messages[{i}].content[{j}]",
                )
    # Parts are separate blocks to the client; a newline keeps them from running together.
    return "\n".join(texts), images or None


def image_base64(url: str, param: str) -> str:
    """Raw base64 of a data URL (Ollama wants no ``data:`` prefix)."""
    return inline_data("ollama", url, param).base64_payload()


def tool_calls_of(i: int, calls: Sequence[ToolCall]) -> list[OllamaToolCall]:
    """An assistant turn's calls, with the JSON-string arguments parsed back into objects."""
    translated: list[OllamaToolCall] = []
    for j, call in enumerate(calls):
        param = f"messages[{i}].tool_calls[{j}].function.arguments"
        raw = call.function.arguments
        try:
            # Some clients send "" for a call without arguments.
            arguments = _decode_any(raw) if raw.strip() else {}
            if json_depth(arguments) > MAX_DEPTH:
                raise ValueError("nested too deeply")
        except UNREADABLE as exc:
            raise InvalidRequest(
                f"Tool call arguments are not valid JSON: {exc}", param=param
            ) from None
        if not isinstance(arguments, dict):
            raise InvalidRequest("Tool call arguments must be a JSON object.", param=param)
        translated.append(OllamaToolCall(OllamaFunctionCall(call.function.name, arguments)))
    return translated


def tools_of(body: ChatBody, provider: str) -> list[dict[str, Any]] | None:
    """The tool list in OpenAI's shape, which Ollama shares (minus ``strict``).

    Ollama has no ``tool_choice``: "none" is honoured by offering no tools and "auto" is what it
    does anyway, but it cannot be made to call a tool, so "required" or a named function is a 400.
    """
    if not body.tools or body.tool_choice == "none":
        return None
    if body.tool_choice is not None and body.tool_choice != "auto":
        raise InvalidRequest(
            f"Provider {provider} cannot be made to call a tool: 'tool_choice' may only be "
            "'auto' or 'none' (for a structured answer, use response_format).",
            param="tool_choice",
            code="unsupported_parameter",
        )
    tools: list[dict[str, Any]] = []
    for tool in body.tools:
        function: dict[str, Any] = {"name": tool.function.name}
        if tool.function.description is not None:
            function["description"] = tool.function.description
        if tool.function.parameters is not None:
            function["parameters"] = tool.function.parameters
        tools.append({"type": "function", "function": function})
    return tools


def options_of(body: ChatBody, extra: object) -> dict[str, Any] | None:
    """Sampling options; ``extra`` is a client's own Ollama ``options`` (e.g. ``num_ctx``)."""
    if extra is not None and not isinstance(extra, dict):
        raise InvalidRequest(
            "'options' must be an object of Ollama model options.", param="options"
        )
    options: dict[str, Any] = dict(extra or {})
    # The OpenAI fields are the documented surface, so they win over the same Ollama option.
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    if body.stop is not None:
        options["stop"] = [body.stop] if isinstance(body.stop, str) else list(body.stop)
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(body, name)
        if value is not None:
            options[name] = value
    return options or None


def format_of(response_format: dict[str, Any] | None) -> str | dict[str, Any] | None:
    """``response_format`` as Ollama's ``format``: "json" or the JSON Schema itself."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "'response_format.json_schema.schema' must be a JSON Schema object.",
                param="response_format.json_schema.schema",
            )
        return schema
    raise InvalidRequest(
        f"Unsupported response_format type {kind!r}; use text, json_object or json_schema.",
        param="response_format.type",
    )


def think_of(effort: str | None) -> bool | str | None:
    """``reasoning_effort`` as Ollama's ``think``; unset leaves the model's default."""
    if effort is None:
        return None
    try:
        return THINK_LEVELS[effort]
    except KeyError:
        allowed = ", ".join(THINK_LEVELS)
        raise InvalidRequest(
            f"Unsupported reasoning_effort {effort!r} for ollama; use one of {allowed}.",
            param="reasoning_effort",
        ) from None
