"""Fields a translator carries only in some values: the default one is fine, another is a 400.

Shared by the translating adapters (Gemini, Ollama), whose upstreams answer with text only and
cannot be kept to one tool call per answer.
"""

from __future__ import annotations

from collections.abc import Mapping

from proxy.chat_form import ChatBody
from proxy.errors import InvalidRequest

#: The fields of an OpenAI chat body both translators carry to their upstream; ``modalities`` and
#: ``parallel_tool_calls`` only in the values checked here, ``n`` and ``tool_choice`` as each says.
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


def require_parallel_calls_allowed(provider: str, body: ChatBody) -> None:
    """A 400 for ``parallel_tool_calls: false`` when tools may be called: the upstream may answer
    with several calls at once and has no way to be told not to."""
    if body.parallel_tool_calls is False and body.tools and body.tool_choice != "none":
        raise InvalidRequest(
            f"Provider {provider} cannot be kept to one tool call per answer: "
            "'parallel_tool_calls: false' is not supported.",
            param="parallel_tool_calls",
            code="unsupported_parameter",
        )
