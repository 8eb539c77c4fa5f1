"""Anthropic Messages turns and content blocks as OpenAI chat messages and parts.

Read right to left from anthropic-messages.md §8. A user turn's ``tool_result`` blocks become
``tool`` messages, first, as chat requires them right after the assistant's ``tool_calls``; the
rest of the turn (text, images, documents) follows as one user message. What a chat ``tool``
message cannot hold (an image or a PDF a tool returned) moves to that user message, after a
line naming the call it came from. A tool result with ``is_error: true`` keeps the mark as an
``Error:`` line before its text, so the next model reads it as the failure it was.

An assistant turn's text blocks join into its content, its ``tool_use`` blocks become
``tool_calls`` (``input`` as a JSON string). Thinking blocks: Claude's own (a non-empty
``signature``) and ``redacted_thinking`` are dropped, since they are another provider's
reasoning, opaque or unverifiable by this one; a thinking block with an empty signature is one
this gateway's translation made from a chat provider's reasoning, and goes back to it as the
turn's ``reasoning_content`` (how DeepSeek and the gateway's other translations take earlier
reasoning back). Server-tool blocks, ``search_result``, ``container_upload``, files by id and
documents chat cannot carry are a 400 naming the block.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from proxy.errors import InvalidRequest

#: Image media types Anthropic accepts in a base64 source.
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

#: The system block Claude Code adds to attribute a call (``x-anthropic-billing-header: …``).
#: It changes with every conversation and means nothing to another provider, whose prompt cache
#: it would defeat by sitting first in the prompt: dropped on the way there.
BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"

#: The text put before a tool result's content when the tool reported an error.
TOOL_ERROR_PREFIX = "Error: "


def invalid(param: str, message: str) -> InvalidRequest:
    """A 400 in Anthropic's style: the message starts with the field path it names."""
    return InvalidRequest(f"{param}: {message}", param=param, code="invalid_value")


def unsupported(param: str, message: str) -> InvalidRequest:
    """A 400 for something no chat upstream can honour, naming the field."""
    return InvalidRequest(f"{param}: {message}", param=param, code="unsupported_parameter")


def string_at(item: Mapping[str, Any], key: str, param: str) -> str:
    """``item[key]``, which must be a string; a 400 naming ``param.key`` otherwise."""
    value = item.get(key)
    if not isinstance(value, str):
        raise invalid(f"{param}.{key}", "Field required" if value is None else "must be a string")
    return value


def object_at(value: object, param: str) -> Mapping[str, Any]:
    """``value``, which must be a JSON object; a 400 naming ``param`` otherwise."""
    if not isinstance(value, dict):
        raise invalid(param, "must be an object")
    return value


@dataclasses.dataclass
class MessageOrigin:
    """Where a chat message came from in the Messages request, to name it in errors.

    ``path`` is the turn (``messages.3``, ``system``); ``content`` the field its chat content
    came from (the turn's ``content``, or a tool_result block); ``parts`` the Messages path of
    each chat content part, index for index (empty when the chat content is a string);
    ``calls`` the ``tool_use`` block of each tool call.
    """

    path: str
    content: str
    parts: list[str] = dataclasses.field(default_factory=list)
    calls: list[str] = dataclasses.field(default_factory=list)


class ChatMessages:
    """Builds the chat messages of a Messages request, in order, with where each came from."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        #: Where each message came from, index for index.
        self.origins: list[MessageOrigin] = []

    def system(self, value: object, param: str) -> None:
        """The top-level ``system`` (or a ``system`` turn's content) as a system message."""
        if isinstance(value, str):
            if value:
                self._append({"role": "system", "content": value}, MessageOrigin(param, param))
            return
        if not isinstance(value, list):
            raise invalid(param, "must be a string or an array of text blocks")
        parts, paths = [], []
        for j, block in enumerate(value):
            at = f"{param}.{j}"
            block = object_at(block, at)
            if block.get("type") != "text":
                raise invalid(f"{at}.type", "system blocks must be of type 'text'")
            text = string_at(block, "text", at)
            if text.startswith(BILLING_HEADER_PREFIX):
                continue
            parts.append({"type": "text", "text": text})
            paths.append(at)
        if parts:
            self._append({"role": "system", "content": parts}, MessageOrigin(param, param, paths))

    def turn(self, message: object, param: str) -> None:
        """One entry of ``messages``."""
        message = object_at(message, param)
        role = message.get("role")
        if "content" not in message or message["content"] is None:
            raise invalid(f"{param}.content", "Field required")
        content = message["content"]
        if role == "user":
            self._user(content, param)
        elif role == "assistant":
            self._assistant(content, param)
        elif role == "system":
            self.system(content, f"{param}.content")
        else:
            raise invalid(f"{param}.role", "must be 'user' or 'assistant'")

    def _append(self, message: dict[str, Any], origin: MessageOrigin) -> None:
        self.messages.append(message)
        self.origins.append(origin)

    # -- user turns ---------------------------------------------------------------------------

    def _user(self, content: object, param: str) -> None:
        where = f"{param}.content"
        if isinstance(content, str):
            self._append({"role": "user", "content": content}, MessageOrigin(param, where))
            return
        blocks = _blocks(content, where)
        parts: list[dict[str, Any]] = []
        paths: list[str] = []
        for j, block in enumerate(blocks):
            at = f"{where}.{j}"
            kind = block.get("type")
            if kind == "tool_result":
                moved = self._tool_result(block, param, at)
                parts += [part for part, _ in moved]
                paths += [path for _, path in moved]
            elif kind in ("text", "image", "document"):
                for part in user_parts(block, at):
                    parts.append(part)
                    paths.append(at)
            else:
                raise _refused_block(kind, "user", at)
        if parts:
            message = {"role": "user", "content": parts}
            self._append(message, MessageOrigin(param, where, paths))

    def _tool_result(
        self, block: Mapping[str, Any], param: str, at: str
    ) -> list[tuple[dict[str, Any], str]]:
        """Append the tool message of a tool_result block; its parts a tool message cannot
        hold come back, with their paths, for the user message after it."""
        call_id = string_at(block, "tool_use_id", at)
        is_error = block.get("is_error")
        if is_error is not None and not isinstance(is_error, bool):
            raise invalid(f"{at}.is_error", "must be a boolean")
        content = block.get("content")
        texts: list[str] = []
        moved: list[tuple[dict[str, Any], str]] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for k, inner in enumerate(content):
                inner_at = f"{at}.content.{k}"
                inner = object_at(inner, inner_at)
                kind = inner.get("type")
                if kind not in ("text", "image", "document"):
                    raise _refused_block(kind, "tool_result", inner_at)
                for part in user_parts(inner, inner_at):
                    if part["type"] == "text":
                        texts.append(part["text"])
                    else:
                        if not moved:
                            note = f"(The result of tool call {call_id} included the following.)"
                            moved.append(({"type": "text", "text": note}, at))
                        moved.append((part, inner_at))
        elif content is not None:
            raise invalid(f"{at}.content", "must be a string or an array of content blocks")
        text = "\n".join(texts)
        if is_error:
            text = TOOL_ERROR_PREFIX + text if text else TOOL_ERROR_PREFIX.rstrip(": ")
        message = {"role": "tool", "tool_call_id": call_id, "content": text}
        self._append(message, MessageOrigin(param, f"{at}.content"))
        self.origins[-1].calls.append(at)
        return moved

    # -- assistant turns ----------------------------------------------------------------------

    def _assistant(self, content: object, param: str) -> None:
        where = f"{param}.content"
        if isinstance(content, str):
            self._append({"role": "assistant", "content": content}, MessageOrigin(param, where))
            return
        texts: list[str] = []
        reasoning: list[str] = []
        calls: list[dict[str, Any]] = []
        call_paths: list[str] = []
        for j, block in enumerate(_blocks(content, where)):
            at = f"{where}.{j}"
            kind = block.get("type")
            if kind == "text":
                texts.append(string_at(block, "text", at))
            elif kind == "tool_use":
                calls.append(_tool_call(block, at))
                call_paths.append(at)
            elif kind == "thinking":
                text = string_at(block, "thinking", at)
                signature = string_at(block, "signature", at)
                if not signature and text:
                    reasoning.append(text)
            elif kind == "redacted_thinking":
                continue
            else:
                raise _refused_block(kind, "assistant", at)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
        if calls:
            message["tool_calls"] = calls
            if not texts:
                message["content"] = None
        if reasoning:
            message["reasoning_content"] = "\n\n".join(reasoning)
        self._append(message, MessageOrigin(param, where, calls=call_paths))


def _blocks(content: object, param: str) -> list[Mapping[str, Any]]:
    if not isinstance(content, list):
        raise invalid(param, "must be a string or an array of content blocks")
    blocks = []
    for j, block in enumerate(content):
        block = object_at(block, f"{param}.{j}")
        if not isinstance(block.get("type"), str):
            raise invalid(f"{param}.{j}.type", "Field required")
        blocks.append(block)
    return blocks


def _refused_block(kind: object, where: str, param: str) -> InvalidRequest:
    return unsupported(
        f"{param}.type",
        f"content blocks of type {kind!r} in a {where} turn have no equivalent for this model's "
        "provider; leave them out, or use a model served by Anthropic.",
    )


def _tool_call(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    arguments = block.get("input")
    if not isinstance(arguments, dict):
        raise invalid(f"{param}.input", "must be an object")
    return {
        "id": string_at(block, "id", param),
        "type": "function",
        "function": {
            "name": string_at(block, "name", param),
            "arguments": json.dumps(arguments, ensure_ascii=False, separators=(",", ":")),
        },
    }


def user_parts(block: Mapping[str, Any], param: str) -> list[dict[str, Any]]:
    """The chat parts of a text, image or document block (a document can give two: its
    context as text, then the file)."""
    kind = block.get("type")
    if kind == "text":
        return [{"type": "text", "text": string_at(block, "text", param)}]
    if kind == "image":
        return [_image(object_at(block.get("source"), f"{param}.source"), param)]
    return _document(block, param)


def _image(source: Mapping[str, Any], param: str) -> dict[str, Any]:
    at = f"{param}.source"
    kind = source.get("type")
    if kind == "base64":
        media_type = string_at(source, "media_type", at)
        if media_type not in IMAGE_MEDIA_TYPES:
            raise invalid(
                f"{at}.media_type", f"must be one of {', '.join(sorted(IMAGE_MEDIA_TYPES))}"
            )
        data = string_at(source, "data", at)
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if kind == "url":
        return {"type": "image_url", "image_url": {"url": string_at(source, "url", at)}}
    if kind == "file":
        raise unsupported(
            f"{at}.type",
            "images by file_id live in Anthropic's Files API, which this model's provider cannot "
            "read; send the image as base64 or a URL.",
        )
    raise invalid(f"{at}.type", "must be 'base64', 'url' or 'file'")


def _document(block: Mapping[str, Any], param: str) -> list[dict[str, Any]]:
    citations = block.get("citations")
    if isinstance(citations, dict) and citations.get("enabled") is True:
        raise unsupported(
            f"{param}.citations",
            "citations on documents have no equivalent for this model's provider; leave "
            "'citations' out, or use a model served by Anthropic.",
        )
    at = f"{param}.source"
    source = object_at(block.get("source"), at)
    kind = source.get("type")
    title = block.get("title")
    context = block.get("context")
    heading = [text for text in (title, context) if isinstance(text, str) and text]
    if kind == "text":
        media_type = source.get("media_type", "text/plain")
        if media_type != "text/plain":
            raise invalid(f"{at}.media_type", "must be 'text/plain'")
        text = string_at(source, "data", at)
        return [{"type": "text", "text": "\n\n".join([*heading, text])}]
    if kind == "base64":
        media_type = string_at(source, "media_type", at)
        if media_type != "application/pdf":
            raise invalid(f"{at}.media_type", "must be 'application/pdf'")
        file = {
            "file_data": f"data:application/pdf;base64,{string_at(source, 'data', at)}",
            "filename": title if isinstance(title, str) and title else "document.pdf",
        }
        parts: list[dict[str, Any]] = []
        if isinstance(context, str) and context:
            parts.append({"type": "text", "text": context})
        parts.append({"type": "file", "file": file})
        return parts
    raise unsupported(
        f"{at}.type",
        f"documents with a source of type {kind!r} have no equivalent for this model's provider "
        "(base64 PDF and plain-text documents do); send the document inline.",
    )
