"""The vocabulary the fake Anthropic's checks share: content blocks by role and their fields, the
thinking signatures it issued, and the refusal every check raises."""

from __future__ import annotations

import base64
import secrets
from typing import Any

__all__ = [
    "ASSISTANT_BLOCKS",
    "BLOCK_FIELDS",
    "IMAGE_MEDIA_TYPES",
    "NEW_VERSION",
    "SERVER_RESULT_BLOCKS",
    "THINKING_DOCS",
    "TOOL_RESULT_CONTENT",
    "USER_BLOCKS",
    "Refused",
    "Signatures",
    "no_extra",
    "thinking_enabled",
]

NEW_VERSION = "2026-10-21"  # no temperature/top_p/top_k; stricter content rules
THINKING_DOCS = (
    "Please consult our documentation at "
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
SERVER_RESULT_BLOCKS = frozenset(
    {
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
    }
)
# Each input block's own fields; None: not checked field by field (server-tool blocks, whose
# shapes the fake only passes back).
BLOCK_FIELDS: dict[str, frozenset[str] | None] = {
    "text": frozenset({"type", "text", "cache_control", "citations"}),
    "image": frozenset({"type", "source", "cache_control"}),
    "document": frozenset({"type", "source", "title", "context", "citations", "cache_control"}),
    "search_result": frozenset(
        {"type", "source", "title", "content", "citations", "cache_control"}
    ),
    "container_upload": frozenset({"type", "file_id", "cache_control"}),
    "tool_use": frozenset({"type", "id", "name", "input", "cache_control", "caller"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"}),
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
    "server_tool_use": None,
    **dict.fromkeys(SERVER_RESULT_BLOCKS),
}
USER_BLOCKS = frozenset(
    {"text", "image", "document", "tool_result", "search_result", "container_upload"}
)
ASSISTANT_BLOCKS = frozenset(
    {
        "text",
        "document",
        "tool_use",
        "thinking",
        "redacted_thinking",
        "server_tool_use",
        *SERVER_RESULT_BLOCKS,
    }
)
TOOL_RESULT_CONTENT = frozenset({"text", "image", "document", "search_result"})


class Signatures:
    """The thinking signatures and redacted-thinking data the fake issued: a block passed back
    must be one of these, unchanged."""

    def __init__(self) -> None:
        self._thinking: dict[str, str] = {}  # signature → the thinking text it signs
        self._redacted: set[str] = set()

    def sign(self, thinking: str) -> str:
        """Issue a signature for this thinking text (tests building a history by hand use it)."""
        signature = "EqQB" + base64.b64encode(secrets.token_bytes(120)).decode()
        self._thinking[signature] = thinking
        return signature

    def redact(self) -> str:
        """Issue an opaque redacted-thinking blob."""
        data = "EmwKAhgBEgy" + base64.b64encode(secrets.token_bytes(96)).decode()
        self._redacted.add(data)
        return data

    def verify(self, thinking: str, signature: str) -> bool:
        """Whether `signature` was issued here for exactly this thinking text."""
        return self._thinking.get(signature) == thinking

    def issued_redacted(self, data: str) -> bool:
        """Whether this redacted-thinking blob was issued here."""
        return data in self._redacted


class Refused(Exception):
    """A request the API refuses; the message is the 400's."""


def thinking_enabled(body: dict[str, Any]) -> bool:
    """Whether the request turns extended thinking on (enabled or adaptive)."""
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def no_extra(obj: dict[str, Any], allowed: frozenset[str], path: str) -> None:
    """Refuse the first field not in `allowed`."""
    for name in obj:
        if name not in allowed:
            raise Refused(f"{path}.{name}: Extra inputs are not permitted")
