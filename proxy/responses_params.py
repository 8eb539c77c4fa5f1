"""Chat field names in a 400 raised on the chat path, renamed to those of the Responses request.

A translated Responses call takes the chat path, whose checks (the internal chat form, the
adapters) name chat fields: ``messages[4].content[1]``, ``max_completion_tokens``. The client
sent neither; :class:`ParamMap` renames them to what it did send (``input[2].content[1]``,
``max_output_tokens``), using where each chat message came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from proxy.errors import InvalidRequest
from proxy.responses_input import MessageOrigin

# Top-level chat fields the translation renamed: chat prefix -> Responses prefix.
_RENAMED = (
    ("max_completion_tokens", "max_output_tokens"),
    ("reasoning_effort", "reasoning.effort"),
    ("response_format.json_schema", "text.format"),
    ("response_format", "text.format"),
    ("tool_choice.allowed_tools.tools", "tool_choice.tools"),
    ("tool_choice.allowed_tools", "tool_choice"),
    ("logprobs", "include"),
    ("stream_options", "stream"),
)
_TOOL = re.compile(r"^tools\[(\d+)\]\.function")
_MESSAGE = re.compile(r"^messages\[(\d+)\](.*)$")
_PART = re.compile(r"^\.content\[\d+\]")
_CALL = re.compile(r"^\.tool_calls\[(\d+)\](.*)$")
# A tool call's chat fields and the function_call item's names for them.
_CALL_FIELDS = (
    (".function.arguments", ".arguments"),
    (".function.name", ".name"),
    (".function", ""),
    (".id", ".call_id"),
)


class ParamMap:
    """Renames chat parameter paths to the Responses request's, for one translated request."""

    def __init__(self, origins: Sequence[MessageOrigin]) -> None:
        self._origins = origins

    def rename(self, param: str | None) -> str | None:
        """The Responses path for a chat path (``param`` itself when it was not renamed)."""
        if param is None:
            return None
        message = _MESSAGE.match(param)
        if message is not None:
            index, rest = int(message.group(1)), message.group(2)
            if index < len(self._origins):
                return _in_message(self._origins[index], rest)
            return "input"
        if param == "messages":
            return "input"
        param = _TOOL.sub(r"tools[\1]", param).replace(".function.name", ".name")
        for chat, responses in _RENAMED:
            if param == chat or param.startswith((chat + ".", chat + "[")):
                return responses + param[len(chat) :]
        return param

    def renamed(self, error: InvalidRequest) -> InvalidRequest:
        """``error`` naming the Responses field, in its param and its message alike."""
        param = self.rename(error.param)
        if param == error.param or error.param is None or type(error) is not InvalidRequest:
            return error
        message = error.message.replace(error.param, param or "")
        return InvalidRequest(message, param=param, code=error.code)


def _in_message(origin: MessageOrigin, rest: str) -> str:
    """The Responses path for ``rest``, a path inside the chat message ``origin`` made."""
    if origin.item in ("instructions", "previous_response_id"):
        return origin.item
    if rest.startswith(".content"):
        if origin.parts and _PART.match(rest):
            return origin.content + rest[len(".content") :]
        return origin.content or origin.item
    call = _CALL.match(rest)
    if call is not None and int(call.group(1)) < len(origin.calls):
        inside = call.group(2)
        for chat, responses in _CALL_FIELDS:
            if inside.startswith(chat):
                inside = responses + inside[len(chat) :]
                break
        return origin.calls[int(call.group(1))] + inside
    if rest == ".tool_call_id":
        return f"{origin.item}.call_id"
    if rest == ".role":
        return f"{origin.item}.role"
    return origin.item
