"""A Responses API request as an OpenAI chat-completions body, for providers that speak only chat.

The body built here takes the ordinary chat path to any provider (responses-api.md §8). Every
field that changes the answer is translated exactly or refused with a 400 naming it
(``code: unsupported_parameter``); an unknown top-level field is refused too, since it may
change the answer. Refused: built-in tools (``web_search*``, ``file_search``, ``computer*``,
``code_interpreter``, ``image_generation``, ``mcp``, ``local_shell``, ``shell``,
``apply_patch``, ``tool_search``, …) and ``custom`` tools, a ``tool_choice`` naming one,
``background: true``, ``conversation``, ``prompt``, ``context_management``, ``include`` values
other than ``message.output_text.logprobs`` (chat's ``logprobs``) and
``reasoning.encrypted_content`` (below), input items with no chat equivalent (``item_reference``,
``custom_tool_call``, ``web_search_call``, ``computer_call``, …). A 400 the chat path raises
later names chat fields; :func:`translate_request` gives the map that renames them
(:mod:`proxy.responses_params`).

Dropped, because they only tune or label the call and the answer means the same without them:
``prompt_cache_key``, ``prompt_cache_retention``, ``prompt_cache_options``,
``safety_identifier``, ``service_tier``, ``truncation`` (the upstream refuses an overlong
prompt instead of truncating it), ``store`` and ``previous_response_id`` (the gateway's own
business, resolved before this), ``stream_options`` (obfuscation padding, never added here),
``text.verbosity``, ``reasoning.summary`` (the provider's reasoning comes back as it is),
``client_metadata``, ``max_tool_calls`` (it caps built-in tool calls, which are refused),
``metadata`` (echoed on the response; chat takes it only with ``store``), and ``include:
["reasoning.encrypted_content"]`` (a translated provider issues no encrypted reasoning: its
reasoning comes back as a summary the client can send back as it is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from proxy.errors import InvalidRequest
from proxy.responses_input import (
    MessageOrigin,
    chat_messages,
    invalid,
    string_field,
    unsupported,
)
from proxy.responses_params import ParamMap

#: Top-level fields dropped on the way to chat (see the module docstring).
DROPPED_FIELDS = frozenset(
    {
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "safety_identifier",
        "service_tier",
        "truncation",
        "store",
        "previous_response_id",
        "stream_options",
        "client_metadata",
        "max_tool_calls",
        # Labels for the gateway's own log and the echoed response; OpenAI's chat takes
        # metadata only with store: true, which would ask the upstream to keep the answer.
        "metadata",
    }
)

#: Top-level fields translated (or checked and found harmless) here.
TRANSLATED_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "user",
        "text",
        "reasoning",
        "include",
        "top_logprobs",
        "stream",
        "background",
    }
)

_LOGPROBS_INCLUDE = "message.output_text.logprobs"
_HARMLESS_INCLUDE = "reasoning.encrypted_content"
_SAME_NAME = ("temperature", "top_p", "parallel_tool_calls", "user")
_FUNCTION_TOOL_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})


def input_items(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as items, as they are stored for a later previous_response_id:
    a string is one user message; a message without ``type`` gets ``"type": "message"``."""
    value = body.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}
        ]
    if not isinstance(value, list):
        raise invalid("input", "'input' must be a string or an array of input items.")
    items = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid(f"input[{i}]", f"'input[{i}]' must be an object.")
        if "type" not in item or item["type"] is None:
            if "role" in item:
                item = {"type": "message", **item}
            elif "id" in item:
                item = {"type": "item_reference", **item}
            else:
                raise invalid(
                    f"input[{i}].type",
                    f"'input[{i}]' has no 'type' and is no message (it has no 'role').",
                )
        elif not isinstance(item["type"], str):
            raise invalid(f"input[{i}].type", f"'input[{i}].type' must be a string.")
        items.append(item)
    return items


def chat_body(body: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The chat-completions body for a Responses body (the client's decoded JSON) and the items
    of the conversation before it (those of the stored responses previous_response_id chains
    back through, oldest first)."""
    return translate_request(body, history)[0]


def translate_request(
    body: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], ParamMap]:
    """:func:`chat_body`, and the map that renames the chat fields a later 400 names (from the
    chat path's own checks) to the fields of this Responses request."""
    _refuse_untranslated(body)
    chat: dict[str, Any] = {"model": body.get("model")}
    messages: list[dict[str, Any]] = []
    origins: list[MessageOrigin] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid("instructions", "'instructions' must be a string.")
        # Each call gives its own instructions: those of earlier calls are not in ``history``.
        messages.append({"role": "system", "content": instructions})
        origins.append(MessageOrigin("instructions"))
    items = [("previous_response_id", item) for item in history]
    items += [(f"input[{i}]", item) for i, item in enumerate(input_items(body))]
    conversation = chat_messages(items)
    messages += conversation.messages
    origins += conversation.origins
    if not any(message["role"] != "system" for message in messages):
        raise InvalidRequest(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    chat["messages"] = messages
    if body.get("tools") is not None:
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    for key in _SAME_NAME:
        if body.get(key) is not None:
            chat[key] = body[key]
    if body.get("max_output_tokens") is not None:
        # Checked here: the chat path would name 'max_completion_tokens', never sent by the client.
        limit = body["max_output_tokens"]
        if not _is_int(limit) or limit < 1:
            raise invalid("max_output_tokens", "'max_output_tokens' must be a positive integer.")
        chat["max_completion_tokens"] = limit
    chat.update(_text(body.get("text")))
    chat.update(_reasoning(body.get("reasoning")))
    chat.update(_logprobs(body.get("include"), body.get("top_logprobs")))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", "'stream' must be true or false.")
    if stream:
        # Usage on the last chunk, for the usage of response.completed.
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat, ParamMap(origins)


def _refuse_untranslated(body: Mapping[str, Any]) -> None:
    _check_metadata(body.get("metadata"))
    for key, value in body.items():
        if value is None or key in DROPPED_FIELDS:
            continue
        if key == "background":
            if value is True:
                raise unsupported(
                    "background",
                    "'background: true' is not supported for this model's provider: its "
                    "responses are answered in the request that asks for them.",
                )
            continue
        if key not in TRANSLATED_FIELDS:
            raise unsupported(
                key,
                f"'{key}' has no equivalent for this model's provider, and dropping it could "
                "change the answer; leave it out, or use a model whose provider serves "
                "/v1/responses itself.",
            )


#: OpenAI's limits on ``metadata``: pairs, key length, value length.
METADATA_LIMITS = (16, 64, 512)


def _check_metadata(metadata: object) -> None:
    """A 400 for metadata OpenAI would refuse: it is echoed on the response and stored with it."""
    if metadata is None:
        return
    pairs, key_chars, value_chars = METADATA_LIMITS
    if (
        not isinstance(metadata, dict)
        or len(metadata) > pairs
        or not all(
            isinstance(value, str) and len(key) <= key_chars and len(value) <= value_chars
            for key, value in metadata.items()
        )
    ):
        raise invalid(
            "metadata",
            f"'metadata' must be an object of at most {pairs} string values, keys of at most "
            f"{key_chars} characters and values of at most {value_chars}.",
        )


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise invalid("tools", "'tools' must be an array.")
    return [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]


def _tool(tool: object, param: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise invalid(param, f"'{param}' must be an object.")
    kind = tool.get("type")
    if kind == "custom":
        raise unsupported(
            f"{param}.type",
            "Custom tools (free-form input) have no chat equivalent for this model's provider; "
            "declare a function tool instead.",
        )
    if kind != "function":
        raise unsupported(
            f"{param}.type",
            f"The built-in tool {kind!r} runs only on OpenAI's servers: this model's provider "
            "cannot use it. Leave it out, or use a model whose provider serves /v1/responses "
            "itself.",
        )
    for key, value in tool.items():
        if key in _FUNCTION_TOOL_KEYS or value is None:
            continue
        if key == "defer_loading" and value is False:
            continue
        raise unsupported(
            f"{param}.{key}", f"'{param}.{key}' has no chat equivalent for this model's provider."
        )
    function: dict[str, Any] = {"name": string_field(tool, "name", param)}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


def _tool_choice(choice: object) -> str | dict[str, Any]:
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise invalid("tool_choice", "'tool_choice' must be 'none', 'auto' or 'required'.")
        return choice
    if not isinstance(choice, dict):
        raise invalid("tool_choice", "'tool_choice' must be a string or an object.")
    kind = choice.get("type")
    if kind == "function":
        return {
            "type": "function",
            "function": {"name": string_field(choice, "name", "tool_choice")},
        }
    if kind == "allowed_tools":
        mode = choice.get("mode")
        if mode not in ("auto", "required"):
            raise invalid("tool_choice.mode", "'tool_choice.mode' must be 'auto' or 'required'.")
        tools = choice.get("tools")
        if not isinstance(tools, list):
            raise invalid("tool_choice.tools", "'tool_choice.tools' must be an array.")
        allowed = []
        for i, tool in enumerate(tools):
            param = f"tool_choice.tools[{i}]"
            if not isinstance(tool, dict) or tool.get("type") != "function":
                raise unsupported(
                    f"{param}.type",
                    f"Only function tools can be allowed for this model's provider ('{param}').",
                )
            allowed.append(
                {"type": "function", "function": {"name": string_field(tool, "name", param)}}
            )
        return {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": allowed}}
    raise unsupported(
        "tool_choice.type",
        f"A tool_choice of type {kind!r} names a tool this model's provider cannot use (only "
        "'none', 'auto', 'required', function and allowed_tools choices can be translated).",
    )


def _text(text: object) -> dict[str, Any]:
    if text is None:
        return {}
    if not isinstance(text, dict):
        raise invalid("text", "'text' must be an object.")
    for key, value in text.items():
        if key not in ("format", "verbosity") and value is not None:
            raise unsupported(f"text.{key}", f"'text.{key}' has no chat equivalent here.")
    fmt = text.get("format")
    if fmt is None:
        return {}
    if not isinstance(fmt, dict):
        raise invalid("text.format", "'text.format' must be an object.")
    kind = fmt.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if kind != "json_schema":
        raise invalid(
            "text.format.type", "'text.format.type' must be 'text', 'json_object' or 'json_schema'."
        )
    schema: dict[str, Any] = {"name": string_field(fmt, "name", "text.format")}
    if not isinstance(fmt.get("schema"), dict):
        raise invalid("text.format.schema", "'text.format.schema' must be a JSON Schema object.")
    for key in ("schema", "strict", "description"):
        if fmt.get(key) is not None:
            schema[key] = fmt[key]
    return {"response_format": {"type": "json_schema", "json_schema": schema}}


def _reasoning(reasoning: object) -> dict[str, Any]:
    if reasoning is None:
        return {}
    if not isinstance(reasoning, dict):
        raise invalid("reasoning", "'reasoning' must be an object.")
    for key, value in reasoning.items():
        if key not in ("effort", "summary", "generate_summary") and value is not None:
            raise unsupported(
                f"reasoning.{key}", f"'reasoning.{key}' has no chat equivalent for this provider."
            )
    effort = reasoning.get("effort")
    if effort is None:
        return {}
    if not isinstance(effort, str):
        raise invalid("reasoning.effort", "'reasoning.effort' must be a string.")
    return {"reasoning_effort": effort}


def _logprobs(include: object, top_logprobs: object) -> dict[str, Any]:
    wanted = False
    if include is not None:
        if not isinstance(include, list):
            raise invalid("include", "'include' must be an array of strings.")
        for i, value in enumerate(include):
            if value == _LOGPROBS_INCLUDE:
                wanted = True
            elif value != _HARMLESS_INCLUDE:
                raise unsupported(
                    f"include[{i}]",
                    f"'include' value {value!r} has no equivalent for this model's provider.",
                )
    if top_logprobs is not None and (not _is_int(top_logprobs) or top_logprobs < 0):
        raise invalid("top_logprobs", "'top_logprobs' must be a non-negative integer.")
    if not wanted:
        if top_logprobs:
            raise invalid(
                "top_logprobs",
                f"'top_logprobs' needs include: [\"{_LOGPROBS_INCLUDE}\"] to be returned.",
            )
        return {}
    chat: dict[str, Any] = {"logprobs": True}
    if top_logprobs is not None:
        chat["top_logprobs"] = top_logprobs
    return chat


def _is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a JSON integer (``true`` is no number, though Python says so)."""
    return isinstance(value, int) and not isinstance(value, bool)
