"""OpenAI's ``choices[].logprobs`` as the translating adapters build it from an upstream's own form.

The shape is ``{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}], "refusal":
null}``, the same in a whole answer and in each stream chunk (which carries its own tokens).
"""

from __future__ import annotations

from msgspec import Struct, field

from proxy.errors import InvalidRequest

#: The most alternatives OpenAI (and Gemini, and Ollama) give per token.
MAX_TOP_LOGPROBS = 20


class TopLogprob(Struct):
    """One of the most likely tokens at a position."""

    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(Struct):
    """One token of the answer with its log probability and the alternatives at its position."""

    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob] = field(default_factory=list)


class ChoiceLogprobs(Struct):
    """``choices[].logprobs``: the answer's tokens; ``refusal`` is null (no refusal tokens)."""

    content: list[TokenLogprob]
    refusal: list[TokenLogprob] | None = None


def utf8_bytes(token: str) -> list[int]:
    """The token's UTF-8 bytes, as OpenAI lists them."""
    return list(token.encode("utf-8", errors="surrogatepass"))


def requested_top_logprobs(logprobs: bool | None, top_logprobs: int | None) -> int | None:
    """How many alternatives per token to ask for (None: logprobs off); a 400 for a count the
    translated upstreams cannot give or one asked without ``logprobs: true`` (as OpenAI says)."""
    if top_logprobs is not None and top_logprobs > MAX_TOP_LOGPROBS:
        raise InvalidRequest(
            f"'top_logprobs' must be between 0 and {MAX_TOP_LOGPROBS}.", param="top_logprobs"
        )
    if not logprobs:
        if top_logprobs:
            raise InvalidRequest(
                "'top_logprobs' needs 'logprobs' set to true.", param="top_logprobs"
            )
        return None
    return top_logprobs or 0
