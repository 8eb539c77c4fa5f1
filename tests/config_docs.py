"""Whether a document lists every configuration key: the example config and the README's list.

The schema is the dataclasses of ``proxy.config``; a document lists a key when a table of its
TOML shows ``key = ...`` (set, or commented out as ``# key = ...``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import get_type_hints

from proxy.config import Config, ModelAlias, ProviderConfig

MOCK_ONLY = frozenset({"latency_ms", "chunk_count"})
ANTHROPIC_ONLY = frozenset({"api_version"})
# Config fields whose TOML table has another name ([providers]' own keys, beside its NAME tables)
TABLE_OF_FIELD = {"provider_wide": "providers"}


def toml_sections(text: str) -> dict[str, str]:
    """The text under each table header, commented-out tables (``# [models.fast]``) included."""
    sections: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        header = re.fullmatch(r"#?\s*\[([^\]]+)\]\s*(#.*)?", line)
        if header:
            current = header.group(1)
            sections[current] = ""
        elif current:
            sections[current] += line + "\n"
    return sections


def documented(text: str, key: str) -> bool:
    """``key = ...`` set or shown commented out (``# key = ...``) in a table's text."""
    return re.search(rf"^(#\s*)?{re.escape(key)}\s*=", text, re.MULTILINE) is not None


def undocumented_keys(sections: dict[str, str], providers: Iterable[str]) -> list[str]:
    """Every key of the schema missing from ``sections``: each plain table, each provider of
    ``providers`` (all provider keys, the mock's own keys under ``providers.mock``), an alias
    example and the ``[fallbacks]`` table."""
    hints = get_type_hints(Config)
    tables = {
        f.name: hints[f.name]
        for f in dataclasses.fields(Config)
        if dataclasses.is_dataclass(hints[f.name])
    }
    missing: list[str] = []
    for name, cls in tables.items():
        missing += [
            f"{name}.{f.name}"
            for f in dataclasses.fields(cls)
            # a derived field (where a value came from) is not a key of the file
            if not f.metadata.get("derived")
            and not documented(sections.get(TABLE_OF_FIELD.get(name, name), ""), f.name)
        ]
    provider_keys = {f.name for f in dataclasses.fields(ProviderConfig)} - {
        "name",
        "api_key_source",
    } | {"api_key_env"}
    for provider in providers:
        keys = provider_keys - ANTHROPIC_ONLY
        keys = keys - MOCK_ONLY if provider != "mock" else keys
        if provider == "anthropic":
            keys |= ANTHROPIC_ONLY
        text = sections.get(f"providers.{provider}", "")
        missing += [f"providers.{provider}.{k}" for k in sorted(keys) if not documented(text, k)]
    if not any(documented(sections.get("providers.mock", ""), k) for k in MOCK_ONLY):
        missing += [f"providers.mock.{k}" for k in sorted(MOCK_ONLY)]
    alias = next((name for name in sections if name.startswith("models.")), None)
    if alias is None:
        missing.append("models.NAME")
    else:
        missing += [
            f"{alias}.{f.name}"
            for f in dataclasses.fields(ModelAlias)
            if f.name != "name" and not documented(sections[alias], f.name)
        ]
    if "fallbacks" not in sections:
        missing.append("fallbacks")
    return missing
