"""What a call cost: the ``genai-prices`` tables, overridden per model by config and the dashboard.

A call whose usage is unknown costs ``None`` (unpriced), never 0: a zero would hide missing data in
every sum. Self-hosted and in-process providers really are free, so they price at 0.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Mapping
from decimal import Decimal

import genai_prices

log = logging.getLogger("llm_proxy.pricing")

# Our provider names -> genai-prices provider ids.
GENAI_PROVIDER_IDS: Mapping[str, str] = {
    "openai": "openai",
    "gemini": "google",
    "deepseek": "deepseek",
    "grok": "x-ai",
    "anthropic": "anthropic",
}
FREE_PROVIDERS = frozenset({"ollama", "mock"})
RATES_TTL_S = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class TokenCounts:
    """Token usage in OpenAI's meaning: cached ⊂ prompt, reasoning ⊂ completion; cache writes
    (Anthropic's, billed above the input rate) ⊂ prompt too, apart from the cached reads."""

    prompt: int
    completion: int
    cached: int = 0
    cache_write: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class PriceOverride:
    """USD per million tokens; a missing cached (or cache-write) price bills those tokens at the
    input price."""

    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    # Only from the price table (the config and dashboard set no cache-write price).
    cache_write_per_mtok: float | None = None

    @property
    def complete(self) -> bool:
        """Whether it prices both directions."""
        return self.input_per_mtok is not None and self.output_per_mtok is not None

    def over(self, base: PriceOverride | None) -> PriceOverride:
        """These prices, with the ones left unset taken from ``base``."""
        if base is None:
            return self
        return PriceOverride(
            base.input_per_mtok if self.input_per_mtok is None else self.input_per_mtok,
            base.output_per_mtok if self.output_per_mtok is None else self.output_per_mtok,
            base.cached_input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok,
            base.cache_write_per_mtok
            if self.cache_write_per_mtok is None
            else self.cache_write_per_mtok,
        )

    def cost(self, tokens: TokenCounts) -> float | None:
        """The call's cost, or None when this override does not price both directions."""
        if self.input_per_mtok is None or self.output_per_mtok is None:
            return None
        cached_rate = self.cached_input_per_mtok
        if cached_rate is None:
            cached_rate = self.input_per_mtok
        write_rate = self.cache_write_per_mtok
        if write_rate is None:
            write_rate = self.input_per_mtok
        uncached = max(tokens.prompt - tokens.cached - tokens.cache_write, 0)
        return (
            uncached * self.input_per_mtok
            + tokens.cached * cached_rate
            + tokens.cache_write * write_rate
            + tokens.completion * self.output_per_mtok
        ) / 1_000_000


class Pricer:
    """Prices calls; overrides are looked up by alias first, then by upstream model name.

    Two layers of overrides: the config's (fixed) and the dashboard's (``model_settings``, set at
    run time with :meth:`set_live_override`). A dashboard price wins field by field; a field it
    leaves unset comes from the config's override, then from the price table.
    """

    def __init__(self, overrides: Mapping[str, PriceOverride] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._live: dict[str, PriceOverride] = {}
        self._rates: dict[tuple[str, str], tuple[float, PriceOverride | None]] = {}

    def with_overrides(self, overrides: Mapping[str, PriceOverride]) -> Pricer:
        """A pricer with these overrides replacing same-named ones (dashboard changes)."""
        return Pricer({**self._overrides, **overrides})

    def set_live_override(self, model: str, override: PriceOverride | None) -> None:
        """The dashboard's prices for ``model`` (alias or upstream name), from the next call on;
        None, or an override without any price, removes them."""
        if override is None or override == PriceOverride():
            self._live.pop(model, None)
        else:
            self._live[model] = override

    @property
    def live_overrides(self) -> Mapping[str, PriceOverride]:
        """The dashboard's prices, by model name."""
        return self._live

    @property
    def config_overrides(self) -> Mapping[str, PriceOverride]:
        """The config file's prices, by model name."""
        return self._overrides

    def rates(
        self, *, provider: str, upstream_model: str, alias: str | None = None
    ) -> PriceOverride | None:
        """USD per million tokens a call would be billed now (cached filled in), for display;
        None when the model is unpriced or its table price is tiered."""
        for name in (alias, upstream_model):
            override = self._override(name, provider, upstream_model) if name else None
            if override is not None and override.complete:
                return override.over(PriceOverride(cached_input_per_mtok=override.input_per_mtok))
        table = self._table_rates(provider, upstream_model)
        if table is None:
            return None
        return table.over(PriceOverride(cached_input_per_mtok=table.input_per_mtok))

    def _override(self, name: str, provider: str, upstream_model: str) -> PriceOverride | None:
        """The prices set for ``name``: the dashboard's over the config's (then the table's)."""
        override = self._overrides.get(name)
        live = self._live.get(name)
        if live is None:
            return override
        merged = live.over(override)
        if merged.complete:
            return merged
        return merged.over(self._table_rates(provider, upstream_model))

    def _table_rates(self, provider: str, upstream_model: str) -> PriceOverride | None:
        """Flat rates from the table (0 for free providers); None: unknown or tiered."""
        if provider in FREE_PROVIDERS:
            return PriceOverride(0.0, 0.0, 0.0)
        provider_id = GENAI_PROVIDER_IDS.get(provider)
        if provider_id is None or not _is_known(provider_id, upstream_model):
            return None
        return self._flat_rates(provider_id, upstream_model)

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
        live = self._live
        for name in (alias, upstream_model):
            if not name:
                continue
            override = (
                self._override(name, provider, upstream_model)
                if live and name in live
                else self._overrides.get(name)
            )
            if override is not None:
                priced = override.cost(tokens)
                if priced is not None:
                    return priced
        if provider in FREE_PROVIDERS:
            return 0.0
        provider_id = GENAI_PROVIDER_IDS.get(provider)
        if provider_id is None or not _is_known(provider_id, upstream_model):
            return None
        flat = self._flat_rates(provider_id, upstream_model)
        if flat is not None:
            return flat.cost(tokens)
        usage = genai_prices.Usage(
            input_tokens=tokens.prompt,
            cache_read_tokens=tokens.cached,
            cache_write_tokens=tokens.cache_write,
            output_tokens=tokens.completion,
        )
        calculation = genai_prices.calc_price(usage, upstream_model, provider_id=provider_id)
        return float(calculation.total_price)

    def _flat_rates(self, provider_id: str, model: str) -> PriceOverride | None:
        """The table's rates for ``model`` when they are flat (no tiers), cached briefly.

        genai-prices costs ~65 µs a call in Decimal arithmetic; most models have one flat price,
        which is the same sum in floats. Prices that change with the date or time of day are
        picked afresh every minute; tiered prices always take the full calculation.
        """
        now = time.monotonic()
        cached = self._rates.get((provider_id, model))
        if cached is not None and cached[0] > now:
            return cached[1]
        price = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=1), model, provider_id=provider_id
        ).model_price
        rates = None
        input_rate, output_rate, cached_rate, write_rate = (
            price.input_mtok,
            price.output_mtok,
            price.cache_read_mtok,
            price.cache_write_mtok,
        )
        if (
            isinstance(input_rate, Decimal)
            and isinstance(output_rate, Decimal)
            and (cached_rate is None or isinstance(cached_rate, Decimal))
            and (write_rate is None or isinstance(write_rate, Decimal))
        ):
            rates = PriceOverride(
                float(input_rate),
                float(output_rate),
                float(cached_rate) if cached_rate is not None else None,
                float(write_rate) if write_rate is not None else None,
            )
        self._rates[(provider_id, model)] = (now + RATES_TTL_S, rates)
        return rates


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
