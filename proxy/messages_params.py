"""Chat field names in a 400 raised on the chat path, renamed to those of the Messages request.

A translated Messages call takes the chat path, whose checks (the internal chat form, the
adapters, the upstream's own 400s) name chat fields: ``messages[4].content[1]``,
``tools[2].function.parameters``, ``stop``. The client sent neither; :class:`ParamMap` renames
them to Anthropic's dotted paths of what it did send (``messages.3.content.1``,
``tools.2.input_schema``, ``stop_sequences``), using where each chat message came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from proxy.errors import InvalidRequest
from proxy.messages_blocks import MessageOrigin

# Top-level chat fields the translation renamed: chat prefix -> Messages prefix.
_RENAMED = (
    ("max_completion_tokens", "max_tokens"),
    ("stop", "stop_sequences"),
    ("response_format.json_schema.schema", "output_config.format.schema"),
    ("response_format", "output_config.format"),
    ("user", "metadata.user_id"),
    ("stream_options", "stream"),
    ("parallel_tool_calls", "tool_choice.disable_parallel_tool_use"),
    ("tool_choice.function.name", "tool_choice.name"),
    ("tool_choice.function", "tool_choice"),
)
_TOOL_FIELDS = ((".function.parameters", ".input_schema"), (".function", ""))
_TOOL = re.compile(r"^tools\[(\d+)\](.*)$")
_MESSAGE = re.compile(r"^messages\[(\d+)\](.*)$")
_PART = re.compile(r"^\.content\[(\d+)\](.*)$")
_CALL = re.compile(r"^\.tool_calls\[(\d+)\](.*)$")
_CALL_FIELDS = (
    (".function.arguments", ".input"),
    (".function.name", ".name"),
    (".function", ""),
    (".id", ".id"),
)
_INDEX = re.compile(r"\[(\d+)\]")


class ParamMap:
    """Renames chat parameter paths to the Messages request's, for one translated request."""

    def __init__(self, origins: Sequence[MessageOrigin], effort_from: str = "thinking") -> None:
        self._origins = origins
        self._effort_from = effort_from

    def rename(self, param: str | None) -> str | None:
        """The Messages path for a chat path (in Anthropic's dotted form)."""
        if param is None:
            return None
        message = _MESSAGE.match(param)
        if message is not None:
            index, rest = int(message.group(1)), message.group(2)
            if index < len(self._origins):
                return _in_message(self._origins[index], rest)
            return "messages"
        tool = _TOOL.match(param)
        if tool is not None:
            rest = tool.group(2)
            for chat, messages in _TOOL_FIELDS:
                if rest.startswith(chat):
                    rest = messages + rest[len(chat) :]
                    break
            return _dotted(f"tools.{tool.group(1)}{rest}")
        if param == "reasoning_effort":
            return self._effort_from
        for chat, messages in _RENAMED:
            if param == chat or param.startswith((chat + ".", chat + "[")):
                return _dotted(messages + param[len(chat) :])
        return _dotted(param)

    def renamed(self, error: InvalidRequest) -> InvalidRequest:
        """``error`` naming the Messages field, in its param and its message alike."""
        param = self.rename(error.param)
        if param == error.param or error.param is None or type(error) is not InvalidRequest:
            return error
        message = error.message.replace(error.param, param or "")
        return InvalidRequest(message, param=param, code=error.code)


def _dotted(path: str) -> str:
    """``a[1].b`` as Anthropic writes it: ``a.1.b``."""
    return _INDEX.sub(r".\1", path)


def _in_message(origin: MessageOrigin, rest: str) -> str:
    """The Messages path for ``rest``, a path inside the chat message ``origin`` made."""
    part = _PART.match(rest)
    if part is not None:
        index = int(part.group(1))
        if index < len(origin.parts):
            return _dotted(origin.parts[index] + part.group(2))
        return origin.content
    if rest.startswith(".content"):
        return origin.content
    call = _CALL.match(rest)
    if call is not None and int(call.group(1)) < len(origin.calls):
        inside = call.group(2)
        for chat, messages in _CALL_FIELDS:
            if inside.startswith(chat):
                inside = messages + inside[len(chat) :]
                break
        return _dotted(origin.calls[int(call.group(1))] + inside)
    if rest == ".tool_call_id" and origin.calls:
        return f"{origin.calls[0]}.tool_use_id"
    if rest == ".role":
        return f"{origin.path}.role"
    return origin.path
