"""The request Claude Code 2.x sends to ``POST /v1/messages?beta=true``, as published captures
show it: system blocks (the per-conversation billing header first) with ``cache_control``, a
user turn mixing a ``<system-reminder>`` and the prompt, a tool with a draft-07 ``$schema``,
``metadata.user_id``, thinking, a streamed answer; and its headers."""

from __future__ import annotations

from typing import Any

from tests.conftest import CLIENT_KEY

PATH = "/v1/messages?beta=true"


def claude_code_body(model: str) -> dict[str, Any]:
    """A Claude Code request body for ``model``."""
    return {
        "model": model,
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.3; cch=1;"},
            {
                "type": "text",
                "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                    {
                        "type": "text",
                        "text": "List the files",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            }
        ],
        "tools": [
            {
                "name": "Bash",
                "description": "Run a command",
                "input_schema": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                    "required": ["command"],
                    "additionalProperties": False,
                },
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "metadata": {"user_id": "user_abc_account_1_session_2"},
        "thinking": {"type": "enabled", "budget_tokens": 4000},
    }


HEADERS = {
    "authorization": f"Bearer {CLIENT_KEY}",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.3 (external, cli)",
}
