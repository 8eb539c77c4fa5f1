"""How the fake Responses API reads a request: OpenAI's checks, input items, words, the echo."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .openai_wire import ErrorReply
from .text import word_count

__all__ = [
    "INCLUDABLE",
    "KNOWN_PARAMETERS",
    "UNKNOWN_RESPONSES_MODEL",
    "as_items",
    "echo_source",
    "input_words",
    "invalid_include",
    "invalid_request",
    "item_text",
    "parameter_error",
    "unanswered_call",
]

# Every top-level key the Responses API takes (the 3.57 SDK's create params, plus what Codex CLI
# sends); anything else is a 400 naming it, as at OpenAI.
KNOWN_PARAMETERS = frozenset(
    {
        "access_programs",
        "background",
        "background_options",
        "client_metadata",
        "context_management",
        "conversation",
        "image",
        "include",
        "input",
        "instructions",
        "max_output_tokens",
        "max_tool_calls",
        "metadata",
        "model",
        "moderation",
        "parallel_tool_calls",
        "previous_response_id",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "truncation",
        "user",
    }
)

# What `include` may name (the 3.57 SDK's ResponseIncludable), in OpenAI's order.
INCLUDABLE = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)

UNKNOWN_RESPONSES_MODEL = "does-not-exist"  # the model the fake says does not exist

_TEXT_PARTS = ("input_text", "output_text", "summary_text", "reasoning_text")


def invalid_request(message: str, param: str | None, code: str | None) -> ErrorReply:
    """A 400 invalid_request_error, as OpenAI words them."""
    return ErrorReply(400, message=message, type="invalid_request_error", code=code, param=param)


def invalid_include(include: Any) -> ErrorReply | None:
    """The 400 OpenAI gives for an `include` entry it does not know, or None."""
    for i, value in enumerate(include if isinstance(include, list) else []):
        if value not in INCLUDABLE:
            supported = ", ".join(f"'{name}'" for name in INCLUDABLE)
            message = f"Invalid value: '{value}'. Supported values are: {supported}."
            return invalid_request(message, f"include[{i}]", "invalid_value")
    return None


def as_items(value: Any) -> list[dict[str, Any]] | None:
    """The request's `input` as a list of items (a string is one user message); None if it is
    neither a string nor a list of objects."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return list(value)
    return None


def item_text(item: Mapping[str, Any]) -> str:
    """The words an item carries: message text, call arguments, tool output, reasoning summary."""
    kind = item.get("type", "message")
    if kind == "message":
        return _parts_text(item.get("content"))
    if kind == "function_call":
        return str(item.get("arguments", ""))
    if kind in ("function_call_output", "custom_tool_call_output"):
        return _parts_text(item.get("output"))
    if kind == "custom_tool_call":
        return str(item.get("input", ""))
    if kind == "reasoning":
        return _parts_text(item.get("summary"))
    return ""


def input_words(items: Iterable[Mapping[str, Any]], instructions: Any) -> int:
    """Input tokens as the fakes count them: words in every item and the instructions."""
    words = sum(word_count(item_text(item)) for item in items)
    return words + (word_count(instructions) if isinstance(instructions, str) else 0)


def echo_source(items: list[dict[str, Any]]) -> str:
    """What the default answer echoes: the last user message's text, or the last tool output
    when it comes after it (the second turn of a tool call)."""
    for item in reversed(items):
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") == "user":
            return item_text(item)
        if kind in ("function_call_output", "custom_tool_call_output"):
            return item_text(item)
    return ""


def unanswered_call(items: list[dict[str, Any]]) -> str | None:
    """The call_id of a function_call_output no earlier function_call issued, or None."""
    issued: set[Any] = set()
    for item in items:
        kind = item.get("type")
        if kind in ("function_call", "custom_tool_call"):
            issued.add(item.get("call_id"))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = item.get("call_id")
            if call_id not in issued:
                return str(call_id)
    return None


def _parts_text(content: Any) -> str:
    """A string, or the text of the text-bearing parts of a list, space-joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") in _TEXT_PARTS:
            texts.append(str(part.get("text", "")))
        elif isinstance(part, dict) and part.get("type") == "refusal":
            texts.append(str(part.get("refusal", "")))
    return " ".join(texts)


def parameter_error(body: dict[str, Any], items: list[dict[str, Any]] | None) -> ErrorReply | None:
    """The 400 OpenAI gives for the request's top-level parameters, or None."""
    for name in body:
        if name not in KNOWN_PARAMETERS:
            return invalid_request(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        message = "Missing required parameter: 'model'."
        return invalid_request(message, "model", "missing_required_parameter")
    if model == UNKNOWN_RESPONSES_MODEL:
        message = f"The requested model '{model}' does not exist."
        return invalid_request(message, "model", "model_not_found")
    if items is None:
        message = (
            "Invalid type for 'input': expected one of a string or array of input items, "
            "but got something else instead."
        )
        return invalid_request(message, "input", "invalid_type")
    if body.get("previous_response_id") is not None and body.get("conversation") is not None:
        message = (
            "Mutually exclusive parameters: Ensure you are only providing one of: "
            "'previous_response_id' or 'conversation'."
        )
        return invalid_request(message, None, "mutually_exclusive_parameters")
    unmodelled = [name for name in ("conversation", "prompt") if body.get(name) is not None]
    if body.get("background") is True:
        unmodelled.insert(0, "background")
    if unmodelled:
        # Answering as if these were honoured would let a test pass for the wrong reason.
        name = unmodelled[0]
        message = f"The fake OpenAI answers without it: '{name}' is not modelled."
        return invalid_request(message, name, "unsupported_parameter")
    return invalid_include(body.get("include"))
