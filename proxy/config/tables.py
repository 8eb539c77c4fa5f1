"""The keys each TOML table accepts, read off the dataclasses, and one table checked against them.

Reading the schema off :mod:`proxy.config.schema` keeps a key described once: its type gives the
kind the file must hold (an integer, a list of strings, ...), its metadata the value check.
Unknown keys are an error naming the key; so is a missing required one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints

from proxy.config.checks import Check, http_url, non_empty, one_of
from proxy.config.schema import (
    AuthConfig,
    ClusterConfig,
    DashboardConfig,
    ImagesConfig,
    LimitsConfig,
    LoggingConfig,
    ModelAlias,
    ProviderConfig,
    ProvidersWideConfig,
    ResponsesConfig,
    ServerConfig,
    StorageConfig,
    config_error,
)
from proxy.config.toml_text import toml_key

__all__ = [
    "FALLBACK_LIST",
    "MODEL_SCHEMA",
    "SCHEMAS",
    "SECTIONS",
    "TOP_LEVEL",
    "Field",
    "as_table",
    "fields",
    "provider_schema",
]

_KINDS: dict[str, Callable[[object], bool]] = {
    "an integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "a number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "a boolean": lambda v: isinstance(v, bool),
    "a string": lambda v: isinstance(v, str),
    "a list of strings": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
}
_KIND_OF_TYPE: dict[object, str] = {
    int: "an integer",
    float: "a number",
    float | None: "a number",
    bool: "a boolean",
    str: "a string",
    tuple[str, ...]: "a list of strings",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One key a table accepts: its kind (a key of ``_KINDS``), its check, whether required."""

    key: str
    kind: str
    check: Check | None = None
    required: bool = False

    def convert(self, value: Any, where: str, source: str) -> Any:
        """Type-check, normalize (int -> float, list -> tuple) and check ``value``."""
        if not _KINDS[self.kind](value):
            raise config_error(source, f"'{where}' must be {self.kind}, got {_describe(value)}")
        if self.kind == "a number":
            value = float(value)
        elif self.kind == "a list of strings":
            value = tuple(value)
        problem = self.check(value) if self.check else None
        if problem:
            raise config_error(source, f"'{where}' {problem}")
        return value


def _schema(cls: type[Any], *skip: str) -> dict[str, Field]:
    """The keys a TOML table for ``cls`` accepts, in field order."""
    hints = get_type_hints(cls)
    schema: dict[str, Field] = {}
    for f in dataclasses.fields(cls):
        if f.name not in skip and not f.metadata.get("derived"):
            hint, check = hints[f.name], f.metadata.get("check")
            if get_origin(hint) is Literal:
                hint, check = str, one_of(*get_args(hint))
            schema[f.name] = Field(f.name, _KIND_OF_TYPE[hint], check, f.default is MISSING)
    return schema


SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "auth": AuthConfig,
    "dashboard": DashboardConfig,
    "limits": LimitsConfig,
    "logging": LoggingConfig,
    "images": ImagesConfig,
    "responses": ResponsesConfig,
    "cluster": ClusterConfig,
    "storage": StorageConfig,
}
SCHEMAS = {name: _schema(cls) for name, cls in SECTIONS.items()}
TOP_LEVEL = (*SECTIONS, "providers", "models", "fallbacks")

# keys whose file form differs from the resolved ProviderConfig field
_PROVIDER_KEYS = {
    "enabled": Field("enabled", "a boolean"),
    "base_url": Field("base_url", "a string", http_url),
    "api_key": Field("api_key", "a string", non_empty),
    "api_key_env": Field("api_key_env", "a string", non_empty),
}
_TUNING = _schema(ProviderConfig, "name", "api_key_source", *_PROVIDER_KEYS)
_MOCK_ONLY = ("latency_ms", "chunk_count")
_ANTHROPIC_ONLY = ("api_version",)
_PROVIDER_SCHEMA = {
    **_PROVIDER_KEYS,
    **{k: v for k, v in _TUNING.items() if k not in _MOCK_ONLY + _ANTHROPIC_ONLY},
}
_ANTHROPIC_SCHEMA = {**_PROVIDER_SCHEMA, **{k: _TUNING[k] for k in _ANTHROPIC_ONLY}}
# mock answers in-process, so its base_url is only a label
_MOCK_SCHEMA = {
    **_PROVIDER_KEYS,
    **{k: v for k, v in _TUNING.items() if k not in _ANTHROPIC_ONLY},
    "base_url": Field("base_url", "a string", non_empty),
}
MODEL_SCHEMA = _schema(ModelAlias, "name")
# [providers]' own keys, beside its NAME tables
PROVIDERS_WIDE_SCHEMA = _schema(ProvidersWideConfig)
FALLBACK_LIST = Field("", "a list of strings", non_empty)


def provider_schema(name: str) -> dict[str, Field]:
    """The keys ``[providers.NAME]`` accepts."""
    if name == "mock":
        return _MOCK_SCHEMA
    return _ANTHROPIC_SCHEMA if name == "anthropic" else _PROVIDER_SCHEMA


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"{'integer' if isinstance(value, int) else 'float'} {value!r}"
    if isinstance(value, str):
        return f"string {json.dumps(value[:60])}"
    if isinstance(value, list | dict):
        return "array" if isinstance(value, list) else "table"
    return type(value).__name__  # tomllib's dates and times


def as_table(value: object, where: str, source: str) -> Mapping[str, Any]:
    """``value`` when it is a TOML table, else the error naming ``where``."""
    if not isinstance(value, dict):
        raise config_error(source, f"'{where}' must be a table, got {_describe(value)}")
    return value


def fields(
    table: Mapping[str, Any], schema: Mapping[str, Field], where: str, source: str
) -> dict[str, Any]:
    """Validate one TOML table against ``schema``."""
    for key in table:
        if key not in schema:
            raise config_error(source, f"unknown key '{where}.{toml_key(key)}'")
    for key, spec in schema.items():
        if spec.required and key not in table:
            raise config_error(source, f"missing required key '{where}.{key}'")
    return {k: schema[k].convert(v, f"{where}.{toml_key(k)}", source) for k, v in table.items()}
