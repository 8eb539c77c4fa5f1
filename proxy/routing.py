"""Model routing (design §6): which provider serves a model name, and under which upstream name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence

from proxy.errors import ModelNotFound, ProviderDisabled, UpstreamUnavailable

# Longest prefixes first is not needed: no prefix here is a prefix of another provider's.
PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("chatgpt-", "openai"),
    ("text-embedding-", "openai"),  # Google's text-embedding-004: gemini/text-embedding-004
    ("gemini-", "gemini"),
    ("deepseek-", "deepseek"),
    ("grok-", "grok"),
    ("claude-", "anthropic"),
    ("mock", "mock"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class AliasTarget:
    """Where an alias points: a provider, its upstream model, and the alias's own fallbacks."""

    provider: str
    model: str
    fallbacks: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """A resolved model: the provider to call, the name it knows, and the alias used (if any)."""

    provider: str
    upstream_model: str
    alias: str | None = None


class Router:
    """Resolves client model names.

    Aliases come from the config and, at run time, from the dashboard (``model_settings`` rows
    naming a provider and an upstream model; they win over a config alias of the same name). Which
    providers and models are switched on changes at run time too, through
    :meth:`set_provider_enabled` and :meth:`set_model_enabled`.
    """

    def __init__(
        self,
        *,
        aliases: Mapping[str, AliasTarget],
        providers: Collection[str],
        enabled: Collection[str],
        local_models: Callable[[], Collection[str]] = frozenset,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._config_aliases = dict(aliases)
        self._live_aliases: dict[str, AliasTarget] = {}
        self._aliases = dict(aliases)
        self._fallbacks = {model: tuple(names) for model, names in (fallbacks or {}).items()}
        self._providers = frozenset(providers)
        self._enabled = frozenset(enabled)
        self._disabled_models: frozenset[str] = frozenset()
        # Ollama's model list changes at run time (pulls), so it is asked for, not copied.
        self._local_models = local_models

    @property
    def aliases(self) -> Mapping[str, AliasTarget]:
        """The aliases, for ``GET /v1/models``."""
        return self._aliases

    def set_live_alias(self, name: str, target: AliasTarget | None) -> None:
        """Make ``name`` an alias of ``target`` (from the dashboard), or drop that alias."""
        if target is not None and target.provider not in self._providers:
            raise ValueError(f"unknown provider {target.provider!r}")
        live = dict(self._live_aliases)
        if target is None:
            live.pop(name, None)
        else:
            live[name] = target
        self._live_aliases = live
        # Replaced, never mutated: a resolve running elsewhere sees one mapping or the other.
        self._aliases = {**self._config_aliases, **live}

    @property
    def disabled_models(self) -> frozenset[str]:
        """Model names switched off from the dashboard."""
        return self._disabled_models

    def is_enabled(self, provider: str) -> bool:
        """Whether calls are routed to ``provider`` now."""
        return provider in self._enabled

    def set_provider_enabled(self, provider: str, enabled: bool) -> None:
        """Route to ``provider`` again, or stop (its calls then answer 503 provider_disabled)."""
        if provider not in self._providers:
            raise ValueError(f"unknown provider {provider!r}")
        # Replaced, never mutated: a resolve running elsewhere sees one set or the other.
        self._enabled = self._enabled | {provider} if enabled else self._enabled - {provider}

    def set_model_enabled(self, model: str, enabled: bool) -> None:
        """Serve ``model`` again, or stop (its calls then answer 404 model_not_found)."""
        if enabled:
            self._disabled_models = self._disabled_models - {model}
        else:
            self._disabled_models = self._disabled_models | {model}

    def resolve(self, model: str) -> Route:
        """Route ``model`` or raise 404 (unknown or disabled) / 503 (provider disabled)."""
        route = self.route_of(model)
        if self._disabled_models:
            self._check_model_enabled(route, model)
        return self._checked(route, model)

    def route_of(self, model: str) -> Route:
        """Where ``model`` would go, whether or not its provider or the model is switched on;
        404 when nothing routes it."""
        target = self._aliases.get(model)
        if target is not None:
            return Route(target.provider, target.model, model)
        provider, slash, rest = model.partition("/")
        if slash and provider in self._providers and rest:
            return Route(provider, rest)
        for prefix, name in PREFIXES:
            if model.startswith(prefix):
                return Route(name, model)
        if "ollama" in self._enabled:
            local = self._local_models()
            # Ollama reads a name without a tag as ":latest", and lists it with the tag.
            if model in local or (":" not in model and f"{model}:latest" in local):
                return Route("ollama", model)
        raise ModelNotFound(
            f"The model '{model}' does not exist or is not routed by this gateway.", param="model"
        )

    def resolve_chain(self, model: str) -> list[Route]:
        """``model``'s route, then its fallbacks' (alias ``fallbacks`` first, then ``[fallbacks]``).

        A fallback that does not route now (unknown, provider disabled) is skipped; a primary
        whose provider is disabled is skipped too when a fallback can answer instead.
        """
        target = self._aliases.get(model)
        names = [*(target.fallbacks if target else ()), *self._fallbacks.get(model, ())]
        try:
            chain = [self.resolve(model)]
        except UpstreamUnavailable:
            if not names:
                raise
            chain = []
        for name in dict.fromkeys(names):
            if name == model:
                continue
            try:
                route = self.resolve(name)
            except (ModelNotFound, UpstreamUnavailable):
                continue
            if route not in chain:
                chain.append(route)
        if not chain:
            raise ProviderDisabled(
                f"Neither the model '{model}' nor any of its fallbacks is served now.",
                param="model",
            )
        return chain

    def model_enabled(self, route: Route, asked: str) -> bool:
        """Whether neither the name asked nor the upstream model it reaches is switched off."""
        disabled = self._disabled_models
        return not (
            asked in disabled
            or route.upstream_model in disabled
            or f"{route.provider}/{route.upstream_model}" in disabled
        )

    def _check_model_enabled(self, route: Route, asked: str) -> None:
        # Switching a model off covers every name that reaches it: an alias, provider/model.
        if not self.model_enabled(route, asked):
            raise ModelNotFound(
                f"The model '{asked}' is disabled on this gateway.",
                param="model",
            )

    def _checked(self, route: Route, asked: str) -> Route:
        if route.provider not in self._enabled:
            raise ProviderDisabled(
                f"The model '{asked}' is served by provider '{route.provider}', which is not "
                "enabled on this gateway.",
                param="model",
            )
        return route
