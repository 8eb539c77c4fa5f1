"""The internal chat form: OpenAI's chat request as strict, typed structs, for translators.

Only an adapter that translates a call to another protocol asks for it
(:meth:`proxy.chat.ChatRequest.form`): a call passed through to an upstream of the same protocol
never does, so fields, tool types and content parts this module does not model still reach it.
What the form cannot represent is a 400 naming the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from proxy.errors import InvalidRequest

# ---------------------------------------------------------------------------------------------
# Request


class ImageURL(Struct, frozen=True):
    """``image_url`` of an image part: a data URL or an http(s) address."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(Struct, frozen=True, tag_field="type", tag="text"):
    """A text content part."""

    text: str


class ImagePart(Struct, frozen=True, tag_field="type", tag="image_url"):
    """An image content part."""

    image_url: ImageURL


class InputAudio(Struct, frozen=True):
    """Base64 audio of an ``input_audio`` part."""

    data: str
    format: str


class AudioPart(Struct, frozen=True, tag_field="type", tag="input_audio"):
    """An audio content part."""

    input_audio: InputAudio


class FileRef(Struct, frozen=True):
    """Inline or uploaded file of a ``file`` part."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(Struct, frozen=True, tag_field="type", tag="file"):
    """A file content part."""

    file: FileRef


class RefusalPart(Struct, frozen=True, tag_field="type", tag="refusal"):
    """A refusal part, only on assistant turns."""

    refusal: str


ContentPart = TextPart | ImagePart | AudioPart | FilePart | RefusalPart


class FunctionCall(Struct, frozen=True):
    """A function call as the model made it: ``arguments`` is a JSON string."""

    name: str
    arguments: str


class ToolCall(Struct, frozen=True):
    """A tool call on an assistant turn; ``extra_content`` carries provider state to send back."""

    id: str
    function: FunctionCall
    type: Literal["function"] = "function"
    extra_content: dict[str, Any] | None = None


Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class Message(Struct, frozen=True):
    """One conversation turn; which fields matter depends on ``role``."""

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class StreamOptions(Struct, frozen=True):
    """``stream_options`` of a streaming request."""

    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class FunctionDef(Struct, frozen=True):
    """A tool's function declaration."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Struct, frozen=True):
    """A function tool the model may call (the one kind every translated upstream has)."""

    function: FunctionDef
    type: Literal["function"] = "function"


PositiveInt = Annotated[int, Meta(ge=1)]


class ChatBody(Struct, frozen=True):
    """The internal chat form: the strict, typed body a translating adapter builds its call from.

    Only translators ask for it (:meth:`ChatRequest.form`); a same-protocol call never does, so a
    field or part the gateway does not model reaches an OpenAI-compatible upstream untouched. The
    ranges of tuning values are the upstream's to judge; here only their types are checked.
    """

    model: str
    messages: Annotated[list[Message], Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    stop: str | list[str] | None = None
    n: PositiveInt | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0)] | None = None
    reasoning_effort: str | None = None
    user: str | None = None


_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def param_of(error: msgspec.ValidationError) -> tuple[str, str | None]:
    """Split msgspec's "... - at `$.messages[0].role`" into a message and an OpenAI param."""
    text = str(error)
    match = _PATH.search(text)
    if match is None:
        return text, None
    param = match.group("path").lstrip(".")
    return f"{text[: match.start()]} at '{param}'", param or None


def to_form(raw: dict[str, Any]) -> ChatBody:
    """The internal form of a raw chat body; an InvalidRequest naming what it cannot represent."""
    tools = raw.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            kind = tool.get("type", "function") if isinstance(tool, dict) else None
            if kind != "function":
                raise InvalidRequest(
                    f"Tools of type {kind!r} cannot be translated for this model's provider "
                    "(only 'function' tools can).",
                    param=f"tools[{i}].type",
                )
    try:
        return msgspec.convert(raw, ChatBody)
    except msgspec.ValidationError as exc:
        message, param = param_of(exc)
        raise InvalidRequest(
            f"This model's provider cannot take the request as sent: {message}", param=param
        ) from None
