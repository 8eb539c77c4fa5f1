"""Model routing (design §6)."""

from __future__ import annotations

import pytest

from proxy.errors import ModelNotFound, UpstreamUnavailable
from proxy.routing import AliasTarget, Route, Router

ALL = ("openai", "gemini", "deepseek", "grok", "anthropic", "ollama", "mock")


def router(enabled: tuple[str, ...] = ALL, local: frozenset[str] = frozenset()) -> Router:
    return Router(
        aliases={"fast": AliasTarget("openai", "gpt-4o-mini", ("gemini-2.5-flash",))},
        providers=ALL,
        enabled=enabled,
        local_models=lambda: local,
    )


@pytest.mark.parametrize(
    ("model", "route"),
    [
        ("fast", Route("openai", "gpt-4o-mini", "fast")),
        ("ollama/llama3.2", Route("ollama", "llama3.2")),
        ("gemini/gemini-2.5-pro", Route("gemini", "gemini-2.5-pro")),
        ("gpt-4o", Route("openai", "gpt-4o")),
        ("o3-mini", Route("openai", "o3-mini")),
        ("chatgpt-4o-latest", Route("openai", "chatgpt-4o-latest")),
        ("gemini-2.5-flash", Route("gemini", "gemini-2.5-flash")),
        ("deepseek-chat", Route("deepseek", "deepseek-chat")),
        ("grok-4.3", Route("grok", "grok-4.3")),
        ("claude-sonnet-4-5", Route("anthropic", "claude-sonnet-4-5")),
        ("anthropic/claude-opus-4-1", Route("anthropic", "claude-opus-4-1")),
        ("mock", Route("mock", "mock")),
    ],
)
def test_routes(model: str, route: Route) -> None:
    assert router().resolve(model) == route


def test_alias_wins_over_prefix() -> None:
    r = Router(
        aliases={"gpt-4o": AliasTarget("gemini", "gemini-2.5-pro")}, providers=ALL, enabled=ALL
    )
    assert r.resolve("gpt-4o").provider == "gemini"


def test_local_ollama_models_route_last() -> None:
    assert router(local=frozenset({"llama3.2"})).resolve("llama3.2") == Route("ollama", "llama3.2")


def test_unknown_model_is_404() -> None:
    with pytest.raises(ModelNotFound) as caught:
        router().resolve("llama3.2")
    assert caught.value.code == "model_not_found"


def test_slash_with_unknown_provider_is_not_a_provider() -> None:
    with pytest.raises(ModelNotFound):
        router().resolve("meta/llama")


def test_disabled_provider_is_503() -> None:
    with pytest.raises(UpstreamUnavailable):
        router(enabled=("mock",)).resolve("gpt-4o")


def chain_router(enabled: tuple[str, ...] = ALL) -> Router:
    return Router(
        aliases={"fast": AliasTarget("openai", "gpt-4o-mini", ("gemini-2.5-flash",))},
        providers=ALL,
        enabled=enabled,
        fallbacks={"fast": ["deepseek-chat"], "gpt-4o": ["nope-model", "fast", "gpt-4o"]},
    )


def test_chain_is_alias_fallbacks_then_table_fallbacks() -> None:
    assert chain_router().resolve_chain("fast") == [
        Route("openai", "gpt-4o-mini", "fast"),
        Route("gemini", "gemini-2.5-flash"),
        Route("deepseek", "deepseek-chat"),
    ]


def test_chain_skips_unknown_self_and_disabled() -> None:
    assert chain_router().resolve_chain("gpt-4o") == [
        Route("openai", "gpt-4o"),
        Route("openai", "gpt-4o-mini", "fast"),
    ]
    chain = chain_router(enabled=("openai", "deepseek")).resolve_chain("fast")
    assert [route.provider for route in chain] == ["openai", "deepseek"]


def test_chain_without_any_servable_model_is_503() -> None:
    with pytest.raises(UpstreamUnavailable):
        chain_router(enabled=("mock",)).resolve_chain("fast")
    with pytest.raises(ModelNotFound):
        chain_router().resolve_chain("no-such-model")
