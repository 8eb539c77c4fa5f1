"""The fake Anthropic's checks of a conversation: system, tools, tool_choice, messages and their
blocks, and the rules across turns (tool_use/tool_result pairing, thinking passed back).

Each problem raises :class:`Refused` with the API's message, a field path first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .anthropic_blocks import (
    ASSISTANT_BLOCKS,
    BLOCK_FIELDS,
    NEW_VERSION,
    THINKING_DOCS,
    TOOL_RESULT_CONTENT,
    USER_BLOCKS,
    Refused,
    Signatures,
    no_extra,
    thinking_enabled,
)
from .anthropic_sources import document_source, image_source

__all__ = ["MAX_CACHE_BREAKPOINTS", "check_conversation"]

MAX_CACHE_BREAKPOINTS = 4
_WHITESPACE_ONLY = "text content blocks must contain non-whitespace text"
_TRAILING_WHITESPACE = "final assistant content cannot end with trailing whitespace"
_TOOL_USE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_DATED_TOOL_TYPE = re.compile(r"^[a-z_]+_\d{8}$")
_CUSTOM_TOOL_FIELDS = frozenset(
    {
        "type",
        "name",
        "description",
        "input_schema",
        "cache_control",
        "strict",
        "input_examples",
        "defer_loading",
        "allowed_callers",
        "eager_input_streaming",
    }
)
_TOOL_CHOICE_FIELDS = {
    "auto": frozenset({"type", "disable_parallel_tool_use"}),
    "any": frozenset({"type", "disable_parallel_tool_use"}),
    "tool": frozenset({"type", "name", "disable_parallel_tool_use"}),
    "none": frozenset({"type"}),
}


def check_conversation(
    body: dict[str, Any], version: str, signatures: Signatures | None, *, count_only: bool
) -> None:
    """Check system, tools, tool_choice and messages, then the rules across turns."""
    breakpoints = 1 if body.get("cache_control") is not None else 0
    if body.get("cache_control") is not None:
        _cache_control(body["cache_control"], "cache_control")
    breakpoints += _system(body.get("system"))
    names, tool_breakpoints = _tools(body.get("tools"))
    breakpoints += tool_breakpoints
    _tool_choice(body.get("tool_choice"), names)
    messages = body["messages"]
    if not isinstance(messages, list):
        raise Refused("messages: Input should be a valid list")
    if not messages:
        raise Refused("messages: at least one message is required")
    turns: list[_Turn] = []
    for i, message in enumerate(messages):
        last = i == len(messages) - 1
        blocks, found = _message(message, i, version, signatures, last=last)
        breakpoints += found
        if turns and turns[-1].role == message["role"]:
            turns[-1].blocks.extend(blocks)
        else:
            turns.append(_Turn(message["role"], i, blocks))
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise Refused(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}."
        )
    _pairing(turns)
    if not count_only and thinking_enabled(body):
        _thinking_first(turns)


@dataclass(slots=True)
class _Turn:
    """Consecutive messages of one role, combined as the API combines them."""

    role: str
    index: int  # of its first message
    blocks: list[tuple[str, dict[str, Any]]]  # (path, block)


def _system(system: Any) -> int:
    """A string or text blocks; returns its cache breakpoints."""
    if system is None or isinstance(system, str):
        return 0
    if not isinstance(system, list):
        raise Refused("system: Input should be a valid string or a list of text blocks")
    found = 0
    for i, block in enumerate(system):
        path = f"system.{i}"
        if not isinstance(block, dict) or block.get("type") != "text":
            kind = block.get("type") if isinstance(block, dict) else None
            raise Refused(f"{path}.type: Input should be 'text' (found {kind!r})")
        found += _block(block, path)
    return found


def _tools(tools: Any) -> tuple[set[str], int]:
    """Client tools (name, input_schema) and dated Anthropic tools; returns the names and the
    cache breakpoints."""
    if tools is None:
        return set(), 0
    if not isinstance(tools, list):
        raise Refused("tools: Input should be a valid list")
    names: set[str] = set()
    found = 0
    for i, tool in enumerate(tools):
        path = f"tools.{i}"
        if not isinstance(tool, dict):
            raise Refused(f"{path}: Input should be a valid dictionary or object")
        kind = tool.get("type", "custom")
        if kind == "custom":
            no_extra(tool, _CUSTOM_TOOL_FIELDS, f"{path}.custom")
            name = tool.get("name")
            if name is None:
                raise Refused(f"{path}.custom.name: Field required")
            if not isinstance(name, str) or not _TOOL_NAME.match(name):
                raise Refused(
                    f"{path}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
                )
            schema = tool.get("input_schema")
            if schema is None:
                raise Refused(f"{path}.custom.input_schema: Field required")
            if not isinstance(schema, dict):
                raise Refused(f"{path}.custom.input_schema: Input should be a valid dictionary")
            if schema.get("type") != "object":
                raise Refused(f"{path}.custom.input_schema.type: Input should be 'object'")
        elif isinstance(kind, str) and _DATED_TOOL_TYPE.match(kind):
            name = tool.get("name")
            if not isinstance(name, str):
                raise Refused(f"{path}.{kind}.name: Field required")
        else:
            raise Refused(
                f"{path}: Input tag '{kind}' found using 'type' does not match any of the "
                "expected tags: 'custom', 'bash_20250124', 'text_editor_20250728', "
                "'web_search_20250305', 'web_fetch_20250910', 'code_execution_20250825', …"
            )
        if name in names:
            raise Refused("tools: Tool names must be unique.")
        names.add(name)
        if tool.get("cache_control") is not None:
            _cache_control(tool["cache_control"], f"{path}.cache_control")
            found += 1
    return names, found


def _tool_choice(choice: Any, names: set[str]) -> None:
    """`{"type": auto|any|tool|none, …}`, never a bare string."""
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise Refused(
            "tool_choice: Input should be a valid dictionary or object to extract fields from"
        )
    kind = choice.get("type")
    if kind not in _TOOL_CHOICE_FIELDS:
        raise Refused(
            f"tool_choice: Input tag '{kind}' found using 'type' does not match any of the "
            "expected tags: 'auto', 'any', 'tool', 'none'"
        )
    no_extra(choice, _TOOL_CHOICE_FIELDS[kind], f"tool_choice.{kind}")
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            raise Refused("tool_choice.tool.name: Field required")
        if name not in names:
            raise Refused(f"tool_choice.tool.name: Tool '{name}' not found in provided tools")


def _message(
    message: Any, i: int, version: str, signatures: Signatures | None, *, last: bool
) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """One message's role and blocks; returns its blocks (with paths) and cache breakpoints."""
    path = f"messages.{i}"
    if not isinstance(message, dict):
        raise Refused(f"{path}: Input should be a valid dictionary or object")
    no_extra(message, frozenset({"role", "content"}), path)
    role = message.get("role")
    if role is None:
        raise Refused(f"{path}.role: Field required")
    if role == "system":
        raise Refused(
            f'{path}.role: Unexpected role "system". The Messages API accepts a top-level '
            '`system` parameter, not "system" as an input message role.'
        )
    if role not in ("user", "assistant"):
        raise Refused(f"{path}.role: Input should be 'user' or 'assistant'")
    if "content" not in message:
        raise Refused(f"{path}.content: Field required")
    content = message["content"]
    empty = content == "" or content == []
    if empty and not (last and role == "assistant"):
        raise Refused(
            f"{path}: all messages must have non-empty content except for the optional final "
            "assistant message"
        )
    if isinstance(content, str):
        if content and not content.strip():
            raise Refused(f"{path}.content: {_WHITESPACE_ONLY}")
        if last and role == "assistant" and content != content.rstrip():
            raise Refused(f"{path}: {_TRAILING_WHITESPACE}")
        return [(f"{path}.content", {"type": "text", "text": content})], 0
    if not isinstance(content, list):
        raise Refused(f"{path}.content: Input should be a valid string or a list of blocks")
    allowed = USER_BLOCKS if role == "user" else ASSISTANT_BLOCKS
    blocks: list[tuple[str, dict[str, Any]]] = []
    found = 0
    for j, block in enumerate(content):
        block_path = f"{path}.content.{j}"
        if not isinstance(block, dict):
            raise Refused(f"{block_path}: Input should be a valid dictionary or object")
        kind = block.get("type")
        if kind not in BLOCK_FIELDS:
            expected = ", ".join(f"'{name}'" for name in sorted(allowed))
            raise Refused(
                f"{block_path}.type: Input tag '{kind}' found using 'type' does not match any of "
                f"the expected tags: {expected}"
            )
        if kind not in allowed:
            raise Refused(f"{block_path}: `{kind}` blocks are not allowed in {role} messages")
        if version == NEW_VERSION and role == "assistant" and kind == "document":
            raise Refused(f"{block_path}: `document` blocks are not allowed in assistant messages")
        if version == NEW_VERSION and role == "user" and kind == "text" and block.get("citations"):
            raise Refused(f"{block_path}.citations: citations are not allowed in user messages")
        found += _block(block, block_path)
        if signatures is not None:
            _returned_thinking(block, block_path, signatures)
        blocks.append((block_path, block))
    if last and role == "assistant" and blocks:
        tail = blocks[-1][1]
        if tail["type"] == "text" and tail["text"] != tail["text"].rstrip():
            raise Refused(f"{path}: {_TRAILING_WHITESPACE}")
    return blocks, found


def _block(block: dict[str, Any], path: str) -> int:
    """One content block's own fields; returns its cache breakpoints (nested ones included)."""
    kind = block["type"]
    fields = BLOCK_FIELDS[kind]
    if fields is not None:
        no_extra(block, fields, f"{path}.{kind}")
    found = 0
    if block.get("cache_control") is not None:
        _cache_control(block["cache_control"], f"{path}.cache_control")
        found += 1
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise Refused(f"{path}.text: Field required")
        if not text:
            raise Refused(f"{path}.text: text content blocks must be non-empty")
        if not text.strip():
            raise Refused(f"{path}.text: {_WHITESPACE_ONLY}")
    elif kind == "image":
        image_source(block.get("source"), f"{path}.image.source")
    elif kind == "document":
        document_source(block.get("source"), f"{path}.document.source")
    elif kind == "tool_use":
        _string(block, "id", path)
        if not _TOOL_USE_ID.match(block["id"]):
            raise Refused(f"{path}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        _string(block, "name", path)
        if not isinstance(block.get("input"), dict):
            raise Refused(f"{path}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        _string(block, "tool_use_id", path)
        content = block.get("content")
        if isinstance(content, list):
            for k, inner in enumerate(content):
                inner_path = f"{path}.content.{k}"
                inner_kind = inner.get("type") if isinstance(inner, dict) else None
                if inner_kind not in TOOL_RESULT_CONTENT:
                    raise Refused(
                        f"{inner_path}.type: Input tag '{inner_kind}' found using 'type' does not "
                        "match any of the expected tags: 'text', 'image', 'document', "
                        "'search_result'"
                    )
                found += _block(inner, inner_path)
        elif content is not None and not isinstance(content, str):
            raise Refused(f"{path}.content: Input should be a valid string or list")
    elif kind == "thinking":
        _string(block, "thinking", path)
        _string(block, "signature", path)
    elif kind == "redacted_thinking":
        _string(block, "data", path)
    return found


def _cache_control(value: Any, path: str) -> None:
    """`{"type": "ephemeral", "ttl"?: "5m" | "1h"}`."""
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise Refused(f"{path}.type: Input should be 'ephemeral'")
    no_extra(value, frozenset({"type", "ttl"}), path)
    if value.get("ttl") not in (None, "5m", "1h"):
        raise Refused(f"{path}.ttl: Input should be '5m' or '1h'")


def _returned_thinking(block: dict[str, Any], path: str, signatures: Signatures) -> None:
    """Thinking passed back must be exactly what the fake issued (signature and text)."""
    if block["type"] == "thinking" and not signatures.verify(block["thinking"], block["signature"]):
        raise Refused(f"{path}: Invalid signature in thinking block")
    if block["type"] == "redacted_thinking" and not signatures.issued_redacted(block["data"]):
        raise Refused(f"{path}: Invalid data in redacted_thinking block")


def _pairing(turns: list[_Turn]) -> None:
    """Every tool_use answered by a tool_result in the next turn, every tool_result answering one
    of the previous turn, tool_result blocks first in their turn."""
    for k, turn in enumerate(turns):
        if turn.role == "assistant":
            ids = [block["id"] for _, block in turn.blocks if block["type"] == "tool_use"]
            if not ids or k == len(turns) - 1:
                continue
            answered = {
                block["tool_use_id"] for _, block in turns[k + 1].blocks if _is_result(block)
            }
            missing = [i for i in ids if i not in answered]
            if missing:
                raise Refused(
                    f"messages.{turn.index}: `tool_use` ids were found without `tool_result` "
                    f"blocks immediately after: {', '.join(missing)}. Each `tool_use` block must "
                    "have a corresponding `tool_result` block in the next message."
                )
            continue
        previous = turns[k - 1] if k else None
        offered = (
            {block["id"] for _, block in previous.blocks if block["type"] == "tool_use"}
            if previous is not None
            else set()
        )
        other_seen = False
        for path, block in turn.blocks:
            if not _is_result(block):
                other_seen = True
                continue
            if other_seen:
                raise Refused(
                    f"{path}: `tool_result` blocks must come first in the user message, before "
                    "any other content"
                )
            if block["tool_use_id"] not in offered:
                raise Refused(
                    f"{path}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )


def _thinking_first(turns: list[_Turn]) -> None:
    """With thinking on, the assistant turn whose tool_use the last user turn answers starts with
    its thinking (or redacted thinking) block."""
    if len(turns) < 2 or turns[-1].role != "user":
        return
    if not any(_is_result(block) for _, block in turns[-1].blocks):
        return
    assistant = turns[-2]
    if not any(block["type"] == "tool_use" for _, block in assistant.blocks):
        return
    path, first = assistant.blocks[0]
    if first["type"] not in ("thinking", "redacted_thinking"):
        raise Refused(
            f"{path}.type: Expected thinking or redacted_thinking, but found {first['type']}. "
            "When thinking is enabled, a final assistant message must start with a thinking "
            "block (preceding the lastmost set of tool_use and tool_result blocks). We "
            "recommend you include thinking blocks from previous turns. To avoid this "
            "requirement, disable thinking. " + THINKING_DOCS
        )


def _is_result(block: dict[str, Any]) -> bool:
    """A client tool_result block."""
    return bool(block["type"] == "tool_result")


def _string(block: dict[str, Any], name: str, path: str) -> None:
    """A required string field of a block."""
    if not isinstance(block.get(name), str):
        raise Refused(f"{path}.{block['type']}.{name}: Field required")
