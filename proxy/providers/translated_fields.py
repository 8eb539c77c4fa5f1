"""Fields a translator carries only in some values: the default one is fine, another is a 400.

Shared by the translating adapters (Gemini, Ollama), whose upstreams answer with text only and
cannot be kept to one tool call per answer.
"""

from __future__ import annotations

from collections.abc import Mapping

from proxy.errors import InvalidRequest

#: The fields of an OpenAI chat body both translators carry to their upstream: ``modalities`` only
#: in the values checked here, ``n`` and ``tool_choice`` as each says, and ``parallel_tool_calls``
#: kept by the gateway (:mod:`proxy.providers.one_tool_call`), as neither upstream takes it.
CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "n",
        "seed",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "reasoning_effort",
        "modalities",
    }
)


def require_text_output(provider: str, raw: Mapping[str, object]) -> None:
    """A 400 unless ``modalities`` (when given) asks for text alone, the only output translated."""
    modalities = raw.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise InvalidRequest(
            f"Provider {provider} answers with text only through this gateway; "
            "'modalities' must be [\"text\"] or left out.",
            param="modalities",
            code="unsupported_parameter",
        )
