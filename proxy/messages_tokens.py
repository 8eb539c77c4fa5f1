"""The input-token estimate ``POST /v1/messages/count_tokens`` answers for a model not served
by Anthropic (anthropic-messages.md §6).

No tokenizer: the body is translated to the chat body it would send (so its own field set is
checked, and whatever the translation drops, such as cache breakpoints and Claude Code's billing
header, is not counted), then counted by the gateway's own estimate of a chat prompt
(:mod:`proxy.token_estimate`: a quarter of the JSON's bytes, a fixed count per image or file).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from proxy.chat import chat_request_of
from proxy.messages_to_chat import count_tokens_body
from proxy.token_estimate import estimate_prompt_tokens

_encode = msgspec.json.Encoder().encode


def estimate_input_tokens(raw: Mapping[str, Any]) -> int:
    """The estimated input tokens of a count_tokens body; a 400 naming what it refuses."""
    chat = count_tokens_body(raw)
    # The model name is routing, not prompt: leave it out of what is counted.
    counted = {key: value for key, value in chat.items() if key != "model"}
    return estimate_prompt_tokens(chat_request_of(chat), len(_encode(counted)))
