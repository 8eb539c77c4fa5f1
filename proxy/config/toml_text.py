"""TOML text for keys and values: how an error names a key, and how a config is written back.

One quoting for both, so a key an error names (``models."gpt-4o"``) is written as the file would
write it, and :func:`proxy.config.render.render_config` produces TOML that parses again.
"""

from __future__ import annotations

import re

__all__ = ["toml_key", "toml_str", "toml_value"]

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def toml_key(part: str) -> str:
    """A TOML key segment: bare when possible, else quoted."""
    return part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else toml_str(part)


def toml_str(text: str) -> str:
    """A TOML basic string, every control character escaped."""
    escaped = (
        _ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ch < " " or ch == "\x7f" else ch) for ch in text
    )
    return '"' + "".join(escaped) + '"'


def toml_value(value: object) -> str:
    """A configuration value (boolean, string, list of strings, number) as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)  # int or float; repr of inf/nan is TOML too
