"""Claude's thinking blocks across tool turns: how they travel to the client and come back.

With extended thinking, the assistant turn whose ``tool_use`` the next user turn answers must
start with that answer's ``thinking`` / ``redacted_thinking`` blocks, byte-identical (their
``signature`` / ``data`` are checked), or Claude answers 400. OpenAI's chat shape has only the
text (``reasoning_content``), so the blocks ride on the answer's tool calls, where a client that
sends the assistant message back carries them unread:
``extra_content: {"anthropic": {"thinking_blocks": [...]}}`` on the first tool call after them
(the place Gemini's thought signatures take). :class:`ThinkingMemory` keeps them too, by tool
call id, for clients that drop fields they do not know. An answer without tool calls needs no
carrier: Claude ignores the thinking of earlier turns.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

THINKING_MEMORY = 10_000
CARRIER = "anthropic"
BLOCKS = "thinking_blocks"


def carried(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``extra_content`` of a tool call that carries ``blocks``."""
    return {CARRIER: {BLOCKS: blocks}}


def blocks_sent(extra_content: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The thinking blocks a client sent back on a tool call, None when it sent none.

    Only blocks of the two kinds Claude made are taken, with their own fields: anything else
    there was not written by this gateway.
    """
    inner = (extra_content or {}).get(CARRIER)
    blocks = inner.get(BLOCKS) if isinstance(inner, dict) else None
    if not isinstance(blocks, list):
        return None
    kept: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "thinking" and isinstance(block.get("signature"), str):
            thinking = block.get("thinking")
            text = thinking if isinstance(thinking, str) else ""
            kept.append({"type": "thinking", "thinking": text, "signature": block["signature"]})
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            kept.append({"type": "redacted_thinking", "data": block["data"]})
    return kept


class ThinkingMemory:
    """The thinking blocks that preceded recent tool calls, by call id, least recent out."""

    def __init__(self, capacity: int = THINKING_MEMORY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, call_id: str, blocks: list[dict[str, Any]]) -> None:
        """Keep ``blocks`` for the turn that sends ``call_id`` back."""
        if not blocks:
            return
        self._entries[call_id] = blocks
        self._entries.move_to_end(call_id)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def recall(self, call_id: str) -> list[dict[str, Any]] | None:
        """The blocks kept for ``call_id``; None when unknown."""
        blocks = self._entries.get(call_id)
        if blocks is not None:
            self._entries.move_to_end(call_id)
        return blocks
