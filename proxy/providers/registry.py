"""Which adapter speaks for which provider."""

from __future__ import annotations

from proxy.config import ProviderConfig
from proxy.providers.anthropic import AnthropicAdapter
from proxy.providers.base import WireAdapter
from proxy.providers.gemini import GeminiAdapter
from proxy.providers.ollama import OllamaAdapter
from proxy.providers.openai_compat import OpenAICompatAdapter

DEEPSEEK_MODELS = ("deepseek-chat", "deepseek-reasoner")
GROK_MODELS = ("grok-4.3", "grok-4.20-0309-reasoning", "grok-4.20-0309-non-reasoning")


def adapter_for(provider: ProviderConfig) -> WireAdapter | None:
    """The wire adapter for ``provider``; None for the in-process ``mock`` provider."""
    match provider.name:
        case "openai":
            return OpenAICompatAdapter("openai", provider.api_key)
        case "deepseek":
            return OpenAICompatAdapter(
                "deepseek", provider.api_key, flavor="deepseek", fallback_models=DEEPSEEK_MODELS
            )
        case "grok":
            return OpenAICompatAdapter(
                "grok", provider.api_key, flavor="grok", fallback_models=GROK_MODELS
            )
        case "gemini":
            return GeminiAdapter("gemini", provider.api_key)
        case "anthropic":
            return AnthropicAdapter("anthropic", provider.api_key, api_version=provider.api_version)
        case "ollama":
            return OllamaAdapter("ollama", provider.api_key)
        case "mock":
            return None
        case name:
            raise ValueError(f"unknown provider {name!r}")
