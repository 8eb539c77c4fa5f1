"""Responses API input items as OpenAI chat messages, for providers that speak only chat.

Items translate one by one (responses-api.md §8): message items of every role keep their role;
``function_call`` items in a row become one assistant message with ``tool_calls`` (joined to the
assistant message just before them, the turn they came from); ``function_call_output`` becomes
a ``tool`` message; ``reasoning`` items are carried or dropped as :class:`ChatMessages` says.
What chat cannot say (items kept by reference, built-in tool calls, custom tools, file URLs)
is a 400 naming the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from proxy.errors import InvalidRequest

#: Roles a message item may have; chat has each of them.
MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})

_IMAGE_DETAILS = frozenset({"auto", "low", "high"})


def unsupported(param: str, message: str) -> InvalidRequest:
    """The 400 for something a chat upstream cannot honour, naming the field."""
    return InvalidRequest(message, param=param, code="unsupported_parameter")


def invalid(param: str, message: str) -> InvalidRequest:
    """The 400 for a value of the wrong shape, naming the field."""
    return InvalidRequest(message, param=param, code="invalid_value")


def string_field(item: Mapping[str, Any], key: str, param: str) -> str:
    """``item[key]``, which must be a string; a 400 naming ``param.key`` otherwise."""
    value = item.get(key)
    if not isinstance(value, str):
        what = "missing" if value is None else f"a {type(value).__name__}"
        raise invalid(f"{param}.{key}", f"'{param}.{key}' must be a string (it is {what}).")
    return value


@dataclasses.dataclass(frozen=True)
class MessageOrigin:
    """Where a chat message came from in the Responses request, to name it in errors: the item
    (``input[3]``), the field its content came from (``input[3].content``, or ``.output`` for a
    tool result), whether its chat parts are that field's parts one for one (not joined), and
    the item of each of its tool calls."""

    item: str
    content: str = ""
    parts: bool = False
    calls: list[str] = dataclasses.field(default_factory=list)


class ChatMessages:
    """Builds the chat messages of a conversation from its Responses items, in order.

    Reasoning: a ``reasoning`` item's summary rides on the next assistant message as
    ``reasoning_content`` (how DeepSeek, xAI and this gateway's Gemini and Ollama translations
    take a model's earlier reasoning back) when the item carries no ``encrypted_content``, the mark
    of an item this gateway's translation made (it never issues an encrypted blob). An item with
    ``encrypted_content`` came from a provider that reasons in private (OpenAI, xAI): the blob is
    opaque and only its issuer reads it, and its summary is a digest of reasoning the next model
    never saw, so the whole item is dropped, as OpenAI drops it for a model that cannot use it.
    """

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        #: Where each message came from, index for index.
        self.origins: list[MessageOrigin] = []
        self._reasoning: list[str] = []
        # The assistant message the next function_call items join (the turn they belong to).
        self._open_turn: dict[str, Any] | None = None

    def add(self, item: Mapping[str, Any], param: str) -> None:
        """Translate one item (``param`` names it in errors)."""
        kind = item.get("type")
        if kind == "message":
            self._message(item, param)
        elif kind == "function_call":
            self._function_call(item, param)
        elif kind == "function_call_output":
            self._close_turn()
            message = {
                "role": "tool",
                "tool_call_id": string_field(item, "call_id", param),
                "content": _tool_output(item.get("output"), f"{param}.output"),
            }
            self._append(message, _origin(message, param, f"{param}.output"))
        elif kind == "reasoning":
            self._close_turn()
            self._reasoning_item(item, param)
        elif kind == "item_reference":
            raise unsupported(
                param,
                f"'{param}' is an item_reference: this gateway keeps no items by reference for "
                "this model's provider; send the item itself, or use previous_response_id.",
            )
        else:
            raise unsupported(
                f"{param}.type",
                f"Input items of type {kind!r} have no chat equivalent for this model's provider "
                "(message, function_call, function_call_output and reasoning items do).",
            )

    def _close_turn(self) -> None:
        self._open_turn = None

    def _append(self, message: dict[str, Any], origin: MessageOrigin) -> None:
        self.messages.append(message)
        self.origins.append(origin)

    def _assistant(self, message: dict[str, Any], origin: MessageOrigin) -> dict[str, Any]:
        if self._reasoning:
            message["reasoning_content"] = "\n\n".join(self._reasoning)
            self._reasoning = []
        self._append(message, origin)
        return message

    def _message(self, item: Mapping[str, Any], param: str) -> None:
        role = item.get("role")
        if not isinstance(role, str) or role not in MESSAGE_ROLES:
            raise invalid(
                f"{param}.role",
                f"'{param}.role' must be one of 'user', 'assistant', 'system', 'developer'.",
            )
        if "content" not in item or item["content"] is None:
            raise invalid(f"{param}.content", f"The message '{param}' needs 'content'.")
        message = {"role": role, "content": _content(role, item["content"], f"{param}.content")}
        origin = _origin(message, param, f"{param}.content")
        self._close_turn()
        if role == "assistant":
            self._open_turn = self._assistant(message, origin)
        else:
            # Reasoning belongs to the assistant turn it preceded; a turn of another role
            # between them means there was none.
            self._reasoning = []
            self._append(message, origin)

    def _function_call(self, item: Mapping[str, Any], param: str) -> None:
        if item.get("namespace") is not None:
            raise unsupported(
                f"{param}.namespace",
                "Namespaced function calls (tool search) have no chat equivalent for this "
                "model's provider.",
            )
        call = {
            "id": string_field(item, "call_id", param),
            "type": "function",
            "function": {
                "name": string_field(item, "name", param),
                "arguments": string_field(item, "arguments", param),
            },
        }
        if self._open_turn is None:
            self._open_turn = self._assistant(
                {"role": "assistant", "content": None}, MessageOrigin(param)
            )
        self._open_turn.setdefault("tool_calls", []).append(call)
        self.origins[-1].calls.append(param)

    def _reasoning_item(self, item: Mapping[str, Any], param: str) -> None:
        if item.get("encrypted_content") is not None:
            return
        texts = _reasoning_texts(item.get("summary"), "summary_text", f"{param}.summary")
        if not texts:
            texts = _reasoning_texts(item.get("content"), "reasoning_text", f"{param}.content")
        self._reasoning.extend(texts)


def chat_messages(items: Iterable[tuple[str, Mapping[str, Any]]]) -> ChatMessages:
    """The chat messages for (param, item) pairs, in order, with their origins."""
    builder = ChatMessages()
    for param, item in items:
        builder.add(item, param)
    return builder


def _origin(message: Mapping[str, Any], param: str, field: str) -> MessageOrigin:
    """The origin of a message whose content came from ``field`` of item ``param``."""
    return MessageOrigin(param, field, isinstance(message["content"], list))


def _reasoning_texts(parts: object, kind: str, param: str) -> list[str]:
    if parts is None:
        return []
    if not isinstance(parts, list):
        raise invalid(param, f"'{param}' must be an array.")
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("type") != kind:
            raise invalid(f"{param}[{j}]", f"'{param}[{j}]' must be a {kind} part.")
        text = string_field(part, "text", f"{param}[{j}]")
        if text:
            texts.append(text)
    return texts


def _content(role: str, content: object, param: str) -> str | list[dict[str, Any]]:
    """A message's content in chat's form: assistant text as one string (chat's usual form)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(param, f"'{param}' must be a string or an array of content parts.")
    parts = [_part(role, part, f"{param}[{j}]") for j, part in enumerate(content)]
    if role == "assistant" and all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _part(role: str, part: object, param: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise invalid(param, f"'{param}' must be a content part object.")
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": string_field(part, "text", param)}
    if kind == "refusal" and role == "assistant":
        return {"type": "refusal", "refusal": string_field(part, "refusal", param)}
    if kind in ("input_image", "input_file") and role in ("user", "tool"):
        return _image(part, param) if kind == "input_image" else _file(part, param)
    if kind in ("refusal", "input_image", "input_file"):
        raise invalid(f"{param}.type", f"A {role} message cannot carry a {kind} part.")
    raise unsupported(
        f"{param}.type",
        f"Content parts of type {kind!r} have no chat equivalent for this model's provider.",
    )


def _image(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    if part.get("file_id") is not None:
        raise unsupported(
            f"{param}.file_id",
            "Images by file_id have no chat equivalent for this model's provider; send the "
            "image as an https or data URL.",
        )
    image: dict[str, Any] = {"url": string_field(part, "image_url", param)}
    detail = part.get("detail")
    if detail is not None:
        if not isinstance(detail, str) or detail not in _IMAGE_DETAILS:
            raise unsupported(
                f"{param}.detail",
                f"Image detail {detail!r} has no chat equivalent (auto, low and high do).",
            )
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _file(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    if part.get("file_url") is not None:
        raise unsupported(
            f"{param}.file_url",
            "Files by URL have no chat equivalent for this model's provider; send file_data.",
        )
    file: dict[str, Any] = {}
    for key in ("file_data", "file_id", "filename"):
        value = part.get(key)
        if value is not None:
            file[key] = string_field(part, key, param)
    if "file_data" not in file and "file_id" not in file:
        raise invalid(param, f"The file part '{param}' needs 'file_data' or 'file_id'.")
    return {"type": "file", "file": file}


def _tool_output(output: object, param: str) -> str | list[dict[str, Any]]:
    """A function call's output: a string, or its parts as chat text/image/file parts."""
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise invalid(param, f"'{param}' must be a string or an array of content parts.")
    return [_part("tool", part, f"{param}[{j}]") for j, part in enumerate(output)]
