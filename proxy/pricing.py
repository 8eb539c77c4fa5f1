"""What a call cost: the ``genai-prices`` tables, overridden per model by config and the dashboard.

A call whose usage is unknown costs ``None`` (unpriced), never 0: a zero would hide missing data in
every sum. Self-hosted and in-process providers really are free, so they price at 0.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping

import genai_prices

log = logging.getLogger("llm_proxy.pricing")

# Our provider names -> genai-prices provider ids.
GENAI_PROVIDER_IDS: Mapping[str, str] = {
    "openai": "openai",
    "gemini": "google",
    "deepseek": "deepseek",
    "grok": "x-ai",
}
FREE_PROVIDERS = frozenset({"ollama", "mock"})


@dataclasses.dataclass(frozen=True, slots=True)
class TokenCounts:
    """Token usage in OpenAI's meaning: cached ⊂ prompt, reasoning ⊂ completion."""

    prompt: int
    completion: int
    cached: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class PriceOverride:
    """USD per million tokens; a missing cached price bills cached tokens at the input price."""

    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None

    def cost(self, tokens: TokenCounts) -> float | None:
        """The call's cost, or None when this override does not price both directions."""
        if self.input_per_mtok is None or self.output_per_mtok is None:
            return None
        cached_rate = self.cached_input_per_mtok
        if cached_rate is None:
            cached_rate = self.input_per_mtok
        uncached = max(tokens.prompt - tokens.cached, 0)
        return (
            uncached * self.input_per_mtok
            + tokens.cached * cached_rate
            + tokens.completion * self.output_per_mtok
        ) / 1_000_000


class Pricer:
    """Prices calls; overrides are looked up by alias first, then by upstream model name."""

    def __init__(self, overrides: Mapping[str, PriceOverride] | None = None) -> None:
        self._overrides = dict(overrides or {})

    def with_overrides(self, overrides: Mapping[str, PriceOverride]) -> Pricer:
        """A pricer with these overrides replacing same-named ones (dashboard changes)."""
        return Pricer({**self._overrides, **overrides})

    def cost(
        self,
        *,
        provider: str,
        upstream_model: str,
        alias: str | None,
        tokens: TokenCounts | None,
    ) -> float | None:
        """USD for one call, or None when usage is unknown or no price is known for the model."""
        if tokens is None:
            return None
        for name in (alias, upstream_model):
            override = self._overrides.get(name) if name else None
            if override is not None:
                priced = override.cost(tokens)
                if priced is not None:
                    return priced
        if provider in FREE_PROVIDERS:
            return 0.0
        provider_id = GENAI_PROVIDER_IDS.get(provider)
        if provider_id is None or not _is_known(provider_id, upstream_model):
            return None
        usage = genai_prices.Usage(
            input_tokens=tokens.prompt,
            cache_read_tokens=tokens.cached,
            output_tokens=tokens.completion,
        )
        calculation = genai_prices.calc_price(usage, upstream_model, provider_id=provider_id)
        return float(calculation.total_price)


@functools.lru_cache(maxsize=1024)
def _is_known(provider_id: str, model: str) -> bool:
    # A failed look-up walks the whole table; remember the answer per model.
    try:
        genai_prices.calc_price(genai_prices.Usage(input_tokens=1), model, provider_id=provider_id)
    except LookupError:
        log.info(
            "no price known for %s model %r: its calls are logged unpriced", provider_id, model
        )
        return False
    return True
