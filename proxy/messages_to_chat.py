"""An Anthropic Messages request as an OpenAI chat-completions body, for providers that speak
only chat (anthropic-messages.md §8, read right to left).

The body built here takes the ordinary chat path to any provider. Every field that changes the
answer is translated exactly or refused with a 400 naming it in Anthropic's dotted form
(``messages.1.content.0.type``); an unknown top-level field is refused as Anthropic refuses it
(``<field>: Extra inputs are not permitted``). Refused: ``mcp_servers``, ``container``,
Anthropic-defined and server tools (a dated ``type``: ``web_search_20250305``,
``bash_20250124``, ``text_editor_…``, ``computer_…``, …), tools loaded on demand
(``defer_loading``) or called from code execution (``allowed_callers``), ``max_tokens: 0``
(a cache pre-warm means nothing elsewhere), documents with citations, and the blocks
:mod:`proxy.messages_blocks` names.

Dropped, because they only tune or label the call (:data:`DROPPED_FIELDS`): ``top_k`` (chat has
no equivalent), ``service_tier``, ``cache_control`` (here and on every block and tool: it only
places Anthropic's cache breakpoints), ``context_management``, ``inference_geo``, ``speed``,
``diagnostics``; on tools ``cache_control`` and ``eager_input_streaming``; ``citations`` on
text blocks passed back. ``thinking.display: "omitted"`` is honoured on the answer
(:mod:`proxy.messages_from_chat`); a tool's ``input_examples`` join its description.

Thinking: ``{"type": "enabled", "budget_tokens": N}`` becomes ``reasoning_effort`` by
:data:`BUDGET_EFFORTS` (under 4,096 ``low``, under 16,384 ``medium``, else ``high``: Claude
Code's "think", "think hard" and "ultrathink" budgets land on the three levels);
``output_config.effort`` is passed as the effort and wins over a budget; ``adaptive`` and
``between_tools`` leave the provider's default; ``disabled`` sends no effort at all (OpenAI's
``"none"`` is refused by every model that does not reason, and most do not).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeGuard

from proxy.messages_blocks import ChatMessages, invalid, object_at, string_at, unsupported
from proxy.messages_params import ParamMap

#: Top-level fields dropped on the way to chat (see the module docstring).
DROPPED_FIELDS = frozenset(
    {
        "top_k",
        "service_tier",
        "cache_control",
        "context_management",
        "inference_geo",
        "speed",
        "diagnostics",
    }
)

#: Top-level fields translated here.
TRANSLATED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stop_sequences",
        "temperature",
        "top_p",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "metadata",
        "mcp_servers",
        "container",
    }
)

#: The fields of a ``count_tokens`` body (§6); any other is refused there.
COUNT_TOKENS_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "mcp_servers",
        "output_config",
        "context_management",
        "cache_control",
    }
)

#: A thinking budget below each bound maps to that effort; larger budgets are ``high``.
BUDGET_EFFORTS = ((4096, "low"), (16384, "medium"))
MIN_THINKING_BUDGET = 1024
#: ``output_config.effort`` values (passed to chat's ``reasoning_effort`` as they are).
EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})

_TOOL_KEYS = frozenset(
    {
        "name",
        "description",
        "input_schema",
        "strict",
        "type",
        "cache_control",
        "eager_input_streaming",
        "input_examples",
        "defer_loading",
        "allowed_callers",
    }
)


def translate_request(raw: Mapping[str, Any]) -> tuple[dict[str, Any], ParamMap]:
    """The chat body for a Messages body (the client's decoded JSON), and the map that renames
    the chat fields a later 400 names to the fields of this request."""
    _refuse_untranslated(raw, TRANSLATED_FIELDS | DROPPED_FIELDS)
    max_tokens = raw.get("max_tokens")
    if max_tokens is None:
        raise invalid("max_tokens", "Field required")
    if not _is_int(max_tokens) or max_tokens < 0:
        raise invalid("max_tokens", "must be a non-negative integer")
    if max_tokens == 0:
        raise unsupported(
            "max_tokens",
            "max_tokens: 0 only pre-warms Anthropic's prompt cache, which this model's provider "
            "does not have; ask for at least 1 token.",
        )
    chat, params = _translate(raw)
    chat["max_tokens"] = max_tokens
    if raw.get("stop_sequences") is not None:
        chat["stop"] = _stop_sequences(raw["stop_sequences"])
    for key in ("temperature", "top_p"):
        if raw.get(key) is not None:
            value = raw[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                raise invalid(key, "must be a number from 0 to 1")
            chat[key] = value
    user = _user_id(raw.get("metadata"))
    if user is not None:
        chat["user"] = user
    stream = raw.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", "must be a boolean")
    if stream:
        # Usage on the last chunk, for message_delta's cumulative usage.
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat, params


def count_tokens_body(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The chat body a ``count_tokens`` body would send (its own field set checked, §6)."""
    _refuse_untranslated(raw, COUNT_TOKENS_FIELDS)
    return _translate(raw)[0]


def _translate(raw: Mapping[str, Any]) -> tuple[dict[str, Any], ParamMap]:
    """What a create and a count_tokens body share: model, conversation, tools, thinking."""
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "Field required" if model is None else "must be a non-empty string")
    for key in ("mcp_servers", "container"):
        if raw.get(key) not in (None, []):
            raise unsupported(
                key,
                f"'{key}' runs at Anthropic and has no equivalent for this model's provider; "
                "leave it out, or use a model served by Anthropic.",
            )
    builder = ChatMessages()
    if raw.get("system") is not None:
        builder.system(raw["system"], "system")
    messages = raw.get("messages")
    if messages is None:
        raise invalid("messages", "Field required")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "must be a non-empty array of messages")
    for i, message in enumerate(messages):
        builder.turn(message, f"messages.{i}")
    chat: dict[str, Any] = {"model": model, "messages": builder.messages}
    tools = _tools(raw.get("tools"))
    if tools:
        chat["tools"] = tools
    if raw.get("tool_choice") is not None:
        chat.update(_tool_choice(raw["tool_choice"], has_tools=bool(tools)))
    effort, effort_from = _effort(raw.get("thinking"), raw.get("output_config"))
    if effort is not None:
        chat["reasoning_effort"] = effort
    response_format = _response_format(raw.get("output_config"))
    if response_format is not None:
        chat["response_format"] = response_format
    return chat, ParamMap(builder.origins, effort_from)


def _refuse_untranslated(raw: Mapping[str, Any], known: frozenset[str]) -> None:
    for key in raw:
        if key not in known:
            # Anthropic's own 400 for a field it does not know.
            raise invalid(key, "Extra inputs are not permitted")


def _stop_sequences(value: object) -> list[str]:
    if not isinstance(value, list):
        raise invalid("stop_sequences", "must be an array of strings")
    for i, sequence in enumerate(value):
        if not isinstance(sequence, str) or not sequence.strip():
            raise invalid(f"stop_sequences.{i}", "must be a string with non-whitespace content")
    return value


def _user_id(metadata: object) -> str | None:
    if metadata is None:
        return None
    metadata = object_at(metadata, "metadata")
    for key in metadata:
        if key != "user_id":
            raise invalid(f"metadata.{key}", "Extra inputs are not permitted")
    user = metadata.get("user_id")
    if user is not None and not isinstance(user, str):
        raise invalid("metadata.user_id", "must be a string")
    return user or None


def _tools(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid("tools", "must be an array of tools")
    return [_tool(tool, f"tools.{i}") for i, tool in enumerate(value)]


def _tool(value: object, param: str) -> dict[str, Any]:
    tool = object_at(value, param)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise unsupported(
            f"{param}.type",
            f"the tool type {kind!r} is defined and run by Anthropic: this model's provider "
            "cannot use it. Leave it out, declare it as a client tool with an input_schema, or "
            "use a model served by Anthropic.",
        )
    for key in tool:
        if key not in _TOOL_KEYS:
            raise invalid(f"{param}.{key}", "Extra inputs are not permitted")
    if tool.get("defer_loading") is True:
        raise unsupported(
            f"{param}.defer_loading",
            "tools loaded on demand need Anthropic's tool search, which this model's provider "
            "does not have.",
        )
    callers = tool.get("allowed_callers")
    if callers is not None and callers != ["direct"]:
        raise unsupported(
            f"{param}.allowed_callers",
            "tools called from Anthropic's code execution have no equivalent for this model's "
            "provider; only 'direct' calls do.",
        )
    schema = object_at(tool.get("input_schema"), f"{param}.input_schema")
    function: dict[str, Any] = {"name": string_at(tool, "name", param), "parameters": schema}
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise invalid(f"{param}.description", "must be a string")
    examples = tool.get("input_examples")
    if examples:
        if not isinstance(examples, list):
            raise invalid(f"{param}.input_examples", "must be an array of objects")
        # Chat tools have no examples: the model reads them in the description instead.
        lines = "\n".join(json.dumps(example, ensure_ascii=False) for example in examples)
        description = f"{description or ''}\n\nExamples of input:\n{lines}".lstrip()
    if description:
        function["description"] = description
    if tool.get("strict") is not None:
        if not isinstance(tool["strict"], bool):
            raise invalid(f"{param}.strict", "must be a boolean")
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(value: object, *, has_tools: bool) -> dict[str, Any]:
    choice = object_at(value, "tool_choice")
    kind = choice.get("type")
    chat: dict[str, Any] = {}
    if kind == "auto":
        chat["tool_choice"] = "auto"
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "tool":
        name = string_at(choice, "name", "tool_choice")
        chat["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif kind == "none":
        chat["tool_choice"] = "none"
        return chat
    else:
        raise invalid("tool_choice.type", "must be 'auto', 'any', 'tool' or 'none'")
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise invalid("tool_choice.disable_parallel_tool_use", "must be a boolean")
    if disable and has_tools:
        # Chat takes parallel_tool_calls only beside tools (OpenAI refuses it alone).
        chat["parallel_tool_calls"] = False
    return chat


def _effort(thinking: object, output_config: object) -> tuple[str | None, str]:
    """The chat ``reasoning_effort`` (None for the provider's default) and the Messages field it
    came from."""
    effort, source = None, "thinking"
    if thinking is not None:
        thinking = object_at(thinking, "thinking")
        kind = thinking.get("type")
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not _is_int(budget) or budget < MIN_THINKING_BUDGET:
                raise invalid(
                    "thinking.budget_tokens",
                    f"must be an integer of at least {MIN_THINKING_BUDGET}",
                )
            effort = next((name for bound, name in BUDGET_EFFORTS if budget < bound), "high")
            source = "thinking.budget_tokens"
        elif kind not in ("adaptive", "disabled", "between_tools"):
            raise invalid(
                "thinking.type", "must be 'enabled', 'adaptive', 'disabled' or 'between_tools'"
            )
    if output_config is not None:
        config = object_at(output_config, "output_config")
        for key in config:
            if key not in ("effort", "format"):
                raise invalid(f"output_config.{key}", "Extra inputs are not permitted")
        wanted = config.get("effort")
        if wanted is not None:
            if wanted not in EFFORTS:
                raise invalid(
                    "output_config.effort", f"must be one of {', '.join(sorted(EFFORTS))}"
                )
            effort, source = wanted, "output_config.effort"
    return effort, source


def _response_format(output_config: object) -> dict[str, Any] | None:
    if not isinstance(output_config, dict) or output_config.get("format") is None:
        return None
    fmt = object_at(output_config["format"], "output_config.format")
    if fmt.get("type") != "json_schema":
        raise invalid("output_config.format.type", "must be 'json_schema'")
    schema = object_at(fmt.get("schema"), "output_config.format.schema")
    # Not strict: OpenAI's strict mode refuses schemas Anthropic takes (optional properties).
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def _is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a JSON integer (``true`` is no number, though Python says so)."""
    return isinstance(value, int) and not isinstance(value, bool)
