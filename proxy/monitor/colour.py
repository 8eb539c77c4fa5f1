"""Colour for the monitor's lines: only on a terminal, and never when ``NO_COLOR`` is set.

The colour codes wrap a cell after it is laid out, so a coloured line takes the same columns as
the plain one (https://no-color.org: a non-empty ``NO_COLOR`` turns colour off).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

__all__ = ["paint", "status_colour", "use_colour"]

GREEN: Final = "32"
RED: Final = "31"
YELLOW: Final = "33"
DIM: Final = "2"
_RESET: Final = "\x1b[0m"


class _Output(Protocol):
    def isatty(self) -> bool: ...


def use_colour(stream: _Output, environ: Mapping[str, str]) -> bool:
    """Whether lines written to ``stream`` may be coloured: a terminal that is not ``dumb``, and
    ``NO_COLOR`` unset or empty."""
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def status_colour(status: object) -> str:
    """The colour of a call's status: ok green, an error red, a cancellation yellow."""
    if status == "ok":
        return GREEN
    if status == "cancelled":
        return YELLOW
    return RED


def paint(text: str, colour: str) -> str:
    """``text`` in ``colour`` (an SGR code); blanks around it stay uncoloured."""
    stripped = text.strip()
    if not stripped:
        return text
    start = text.index(stripped)
    end = start + len(stripped)
    return f"{text[:start]}\x1b[{colour}m{stripped}{_RESET}{text[end:]}"
