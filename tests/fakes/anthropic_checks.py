"""The fake Anthropic's request validation: the 400s the Messages API gives, each naming its path.

`check_create` (POST /v1/messages) and `check_count` (POST /v1/messages/count_tokens) return the
message of the first problem found, or None. Messages follow the API's wording: a field path
(`messages.1.content.0.type`), a colon, what is wrong. What a translating gateway most often gets
wrong is refused here exactly as Claude refuses it: OpenAI fields forwarded (`user: Extra inputs
are not permitted`), OpenAI content parts (`image_url`), tool ids unpaired, thinking blocks
edited or dropped between tool turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .anthropic_blocks import (
    NEW_VERSION,
    THINKING_DOCS,
    Refused,
    Signatures,
    no_extra,
    thinking_enabled,
)
from .anthropic_content import check_conversation

__all__ = [
    "API_VERSIONS",
    "INTERLEAVED_BETA",
    "ModelLimits",
    "check_count",
    "check_create",
    "thinking_enabled",
]

API_VERSIONS = ("2023-06-01", "2026-10-21")
INTERLEAVED_BETA = "interleaved-thinking-2025-05-14"
SAMPLING_FIELDS = ("temperature", "top_p", "top_k")
CREATE_FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stop_sequences",
        *SAMPLING_FIELDS,
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
        "service_tier",
        "container",
        "context_management",
        "mcp_servers",
        "output_config",
        "inference_geo",
        "speed",
        "cache_control",
        "diagnostics",
    }
)
COUNT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "mcp_servers",
        "output_config",
        "context_management",
        "cache_control",
        "speed",
    }
)
_THINKING_FIELDS = {
    "enabled": frozenset({"type", "budget_tokens", "display"}),
    "adaptive": frozenset({"type", "display"}),
    "disabled": frozenset({"type"}),
}


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """What the checks need to know about the requested model."""

    max_tokens: int
    exclusive_sampling: bool  # Claude 4.5+: temperature and top_p not both


def check_create(
    body: Any,
    *,
    version: str,
    betas: frozenset[str],
    signatures: Signatures,
    model: ModelLimits | None,
) -> str | None:
    """The 400 message for a POST /v1/messages body, or None if it is valid (`model`: the
    requested model's limits, None when unknown; the caller answers that with a 404)."""
    try:
        _create(body, version, betas, signatures, model)
    except Refused as refused:
        return str(refused)
    return None


def check_count(body: Any, *, version: str) -> str | None:
    """The 400 message for a POST /v1/messages/count_tokens body, or None if it is valid."""
    try:
        _top_level(body, ("model", "messages"), COUNT_FIELDS, version)
        check_conversation(body, version, None, count_only=True)
        _thinking(body, None, frozenset())
    except Refused as refused:
        return str(refused)
    return None


def _create(
    body: Any,
    version: str,
    betas: frozenset[str],
    signatures: Signatures,
    model: ModelLimits | None,
) -> None:
    """Every check of a create call, in the order the API reports them."""
    _top_level(body, ("model", "max_tokens", "messages"), CREATE_FIELDS, version)
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise Refused("max_tokens: Input should be a valid integer")
    if max_tokens < 0:
        raise Refused("max_tokens: Input should be greater than or equal to 0")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise Refused("stream: Input should be a valid boolean")
    _sampling(body)
    _stop_sequences(body.get("stop_sequences"))
    _metadata(body.get("metadata"))
    check_conversation(body, version, signatures, count_only=False)
    _thinking(body, max_tokens, betas)
    if model is not None:
        if max_tokens > model.max_tokens:
            raise Refused(
                f"max_tokens: {max_tokens} > {model.max_tokens}, which is the maximum allowed "
                f"number of output tokens for {body['model']}"
            )
        both = body.get("temperature") is not None and body.get("top_p") is not None
        if model.exclusive_sampling and both:
            raise Refused(
                "`temperature` and `top_p` cannot both be specified for this model. "
                "Please use only one."
            )


def _top_level(body: Any, required: tuple[str, ...], allowed: frozenset[str], version: str) -> None:
    """A JSON object with the required fields and no others."""
    if not isinstance(body, dict):
        raise Refused("There was an error parsing the body of your request: expected an object")
    for name in required:
        if name not in body:
            raise Refused(f"{name}: Field required")
    for name in body:
        if name not in allowed or (version == NEW_VERSION and name in SAMPLING_FIELDS):
            raise Refused(f"{name}: Extra inputs are not permitted")
    if not isinstance(body["model"], str) or not body["model"]:
        raise Refused("model: Input should be a valid string")


def _sampling(body: dict[str, Any]) -> None:
    """temperature and top_p in [0, 1], top_k an integer ≥ 0."""
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Refused(f"{name}: Input should be a valid number")
        if value < 0:
            raise Refused(f"{name}: Input should be greater than or equal to 0")
        if value > 1:
            raise Refused(f"{name}: Input should be less than or equal to 1")
    top_k = body.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise Refused("top_k: Input should be a valid integer greater than or equal to 0")


def _stop_sequences(value: Any) -> None:
    """A list of strings, each with something besides whitespace."""
    if value is None:
        return
    if not isinstance(value, list):
        raise Refused("stop_sequences: Input should be a valid list")
    for i, sequence in enumerate(value):
        if not isinstance(sequence, str):
            raise Refused(f"stop_sequences.{i}: Input should be a valid string")
        if not sequence.strip():
            raise Refused("stop_sequences: Each stop sequence must contain non-whitespace")


def _metadata(value: Any) -> None:
    """`{"user_id": string | null}` and nothing else."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise Refused("metadata: Input should be a valid dictionary")
    for name in value:
        if name != "user_id":
            raise Refused(f"metadata.{name}: Extra inputs are not permitted")
    user_id = value.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise Refused("metadata.user_id: Input should be a valid string")


def _thinking(body: dict[str, Any], max_tokens: int | None, betas: frozenset[str]) -> None:
    """The thinking setting, and what it rules out (forced tools, most sampling settings)."""
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, dict):
        raise Refused("thinking: Input should be a valid dictionary or object")
    kind = thinking.get("type")
    if kind not in _THINKING_FIELDS:
        raise Refused(
            f"thinking: Input tag '{kind}' found using 'type' does not match any of the expected "
            "tags: 'enabled', 'disabled', 'adaptive'"
        )
    no_extra(thinking, _THINKING_FIELDS[kind], f"thinking.{kind}")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if budget is None:
            raise Refused("thinking.enabled.budget_tokens: Field required")
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise Refused("thinking.enabled.budget_tokens: Input should be a valid integer")
        if budget < 1024:
            raise Refused(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if max_tokens is not None and budget >= max_tokens and INTERLEAVED_BETA not in betas:
            raise Refused(
                f"`max_tokens` must be greater than `thinking.budget_tokens`. {THINKING_DOCS}"
                "#max-tokens-and-context-window-size"
            )
    if kind == "disabled":
        return
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        raise Refused(
            f"`temperature` may only be set to 1 when thinking is enabled. {THINKING_DOCS}"
        )
    if body.get("top_k") is not None:
        raise Refused(f"`top_k` is not supported when thinking is enabled. {THINKING_DOCS}")
    top_p = body.get("top_p")
    if top_p is not None and not 0.95 <= top_p <= 1:
        raise Refused(
            "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. "
            + THINKING_DOCS
        )
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise Refused("Thinking may not be enabled when tool_choice forces tool use.")
