"""Pricing: genai-prices tables, overrides, and NULL (never 0) for what is unknown."""

from __future__ import annotations

import pytest

from proxy.pricing import PriceOverride, Pricer, TokenCounts

TOKENS = TokenCounts(prompt=1000, completion=500, cached=200)


def test_table_price_bills_cached_tokens_at_the_cached_rate() -> None:
    cost = Pricer().cost(provider="openai", upstream_model="gpt-4o-mini", alias=None, tokens=TOKENS)
    # 800 × 0.15 + 200 × 0.075 + 500 × 0.60, per million
    assert cost == pytest.approx(0.000435)


def test_unknown_usage_is_unpriced_not_free() -> None:
    assert (
        Pricer().cost(provider="openai", upstream_model="gpt-4o", alias=None, tokens=None) is None
    )


def test_unknown_model_is_unpriced() -> None:
    cost = Pricer().cost(
        provider="openai", upstream_model="my-finetune-xyz", alias=None, tokens=TOKENS
    )
    assert cost is None


def test_self_hosted_and_mock_are_free() -> None:
    for provider in ("ollama", "mock"):
        assert (
            Pricer().cost(provider=provider, upstream_model="x", alias=None, tokens=TOKENS) == 0.0
        )


def test_alias_override_wins_then_upstream_model_override() -> None:
    pricer = Pricer(
        {"fast": PriceOverride(1.0, 2.0, 0.5), "gpt-4o-mini": PriceOverride(10.0, 20.0)}
    )
    by_alias = pricer.cost(
        provider="openai", upstream_model="gpt-4o-mini", alias="fast", tokens=TOKENS
    )
    assert by_alias == pytest.approx((800 * 1.0 + 200 * 0.5 + 500 * 2.0) / 1e6)
    by_model = pricer.cost(
        provider="openai", upstream_model="gpt-4o-mini", alias=None, tokens=TOKENS
    )
    # No cached price: cached tokens are billed as input.
    assert by_model == pytest.approx((1000 * 10.0 + 500 * 20.0) / 1e6)


def test_override_prices_an_otherwise_unknown_model() -> None:
    pricer = Pricer({"my-finetune-xyz": PriceOverride(3.0, 6.0)})
    cost = pricer.cost(
        provider="openai", upstream_model="my-finetune-xyz", alias=None, tokens=TOKENS
    )
    assert cost == pytest.approx((1000 * 3.0 + 500 * 6.0) / 1e6)


@pytest.mark.parametrize(
    ("provider", "model"),
    [("gemini", "gemini-2.5-flash"), ("deepseek", "deepseek-chat"), ("grok", "grok-4")],
)
def test_every_keyed_provider_has_table_prices(provider: str, model: str) -> None:
    cost = Pricer().cost(provider=provider, upstream_model=model, alias=None, tokens=TOKENS)
    assert cost is not None
    assert cost > 0


@pytest.mark.parametrize(
    ("provider", "provider_id", "model"),
    [
        ("openai", "openai", "gpt-4o-mini"),
        ("gemini", "google", "gemini-2.5-flash"),
        ("gemini", "google", "gemini-2.5-pro"),  # tiered by prompt length: the full calculation
        ("deepseek", "deepseek", "deepseek-chat"),
        ("grok", "x-ai", "grok-4"),
    ],
)
def test_cached_flat_rates_price_exactly_like_the_table(
    provider: str, provider_id: str, model: str
) -> None:
    import genai_prices

    pricer = Pricer()
    for tokens in (TOKENS, TokenCounts(prompt=300_000, completion=10, cached=0)):
        usage = genai_prices.Usage(
            input_tokens=tokens.prompt,
            cache_read_tokens=tokens.cached,
            output_tokens=tokens.completion,
        )
        expected = float(genai_prices.calc_price(usage, model, provider_id=provider_id).total_price)
        for _ in range(2):  # the first call fills the cache, the second uses it
            cost = pricer.cost(provider=provider, upstream_model=model, alias=None, tokens=tokens)
            assert cost == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "model", ["claude-haiku-4-5", "claude-opus-4-1", "claude-sonnet-4-5-20250929"]
)
def test_cache_writes_are_billed_at_the_cache_write_rate(model: str) -> None:
    import genai_prices

    # 1,000 uncached input tokens, 2,000 written to the cache, 3,000 read from it.
    tokens = TokenCounts(prompt=6000, completion=100, cached=3000, cache_write=2000)
    usage = genai_prices.Usage(
        input_tokens=6000, cache_read_tokens=3000, cache_write_tokens=2000, output_tokens=100
    )
    price = genai_prices.calc_price(usage, model, provider_id="anthropic")
    pricer = Pricer()
    for _ in range(2):  # the first call fills the flat-rate cache, the second uses it
        cost = pricer.cost(provider="anthropic", upstream_model=model, alias=None, tokens=tokens)
        assert cost == pytest.approx(float(price.total_price), rel=1e-12)
    rates = price.model_price
    assert rates.cache_write_mtok is not None
    # Writes cost more than plain input: billing them as input would undercount.
    plain = pricer.cost(
        provider="anthropic",
        upstream_model=model,
        alias=None,
        tokens=TokenCounts(prompt=6000, completion=100, cached=3000),
    )
    assert plain is not None
    assert cost is not None
    assert cost > plain


def test_an_override_without_a_cache_write_price_bills_writes_as_input() -> None:
    override = PriceOverride(input_per_mtok=2.0, output_per_mtok=4.0, cached_input_per_mtok=0.5)
    tokens = TokenCounts(prompt=6000, completion=100, cached=3000, cache_write=2000)
    assert override.cost(tokens) == pytest.approx((3000 * 2.0 + 3000 * 0.5 + 100 * 4.0) / 1e6)
