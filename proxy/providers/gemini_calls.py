"""Gemini's tool calls across turns: the ids we give them and the thought signatures to send back.

Gemini's thought signatures must come back on the next turn. They travel to the client as
``extra_content.google.thought_signature`` (the shape of Google's own OpenAI-compatible
endpoint); :class:`CallMemory` keeps them too, for clients that drop fields they do not know.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict

SIGNATURE_MEMORY = 10_000
# Google's documented stand-in for a function call whose signature is unknown (a history written
# by another model, or by a client that dropped it): without one, Gemini 3 rejects the turn.
SKIP_SIGNATURE = "skip_thought_signature_validator"


def new_call_id() -> str:
    """A tool-call id for a call Gemini did not name: ``call_`` + 24 url-safe characters."""
    return "call_" + secrets.token_urlsafe(18)


class CallMemory:
    """Thought signatures and Gemini-issued ids of recent tool calls, bounded, least recent out.

    The signature also travels to the client in ``extra_content``; this is the fallback for
    clients that drop fields they do not know.
    """

    def __init__(self, capacity: int = SIGNATURE_MEMORY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[str | None, bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, call_id: str, signature: str | None, *, native_id: bool) -> None:
        """Keep what the next turn must send back for ``call_id``."""
        if signature is None and not native_id:
            return
        self._entries[call_id] = (signature, native_id)
        self._entries.move_to_end(call_id)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def recall(self, call_id: str) -> tuple[str | None, bool]:
        """``(signature, whether Gemini issued the id)``; ``(None, False)`` when unknown."""
        entry = self._entries.get(call_id)
        if entry is None:
            return None, False
        self._entries.move_to_end(call_id)
        return entry
