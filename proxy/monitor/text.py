"""Terminal-safe text for the monitor: control characters replaced, lines cut to a width.

Model, client and provider names and error messages come from API callers and servers: an escape
sequence printed as is would drive the terminal, so the monitor passes them through ``printable``.
"""

from __future__ import annotations


def printable(text: object) -> str:
    """``text`` with control characters replaced: model and client names come from API callers,
    and an escape sequence printed as is would drive the terminal."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(char if char.isprintable() else "?" for char in value)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the cut marked with ``~``."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    return text[: width - 1] + "~"
