"""Money as the dashboard shows it: cents from a cent up, two significant digits below, so a
priced call never looks free ($0.000012, $0.0031, $1.24); ``-`` for an unpriced call."""

from __future__ import annotations

import math
from typing import Final

__all__ = ["usd"]

_EXACT_DIGITS: Final = 12  # a millionth of a cent and below, past anything a price table holds


def usd(value: object) -> str:
    """``value`` US dollars as text, by the dashboard's rule (``format.js``: ``usd``): cents from
    a dollar up, below that enough decimals for two significant digits (``$1,234.50``, ``$0.50``,
    ``$0.015``, ``$0.0031``, ``$0.000012``); ``$0.00`` for a free call, ``-`` when unpriced (None
    or not a finite number)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    size = abs(value)
    sign = "-" if value < 0 else ""
    if size == 0 or size >= 1:
        return f"{sign}${size:,.2f}"
    if size < 10**-_EXACT_DIGITS:
        return f"< ${10**-_EXACT_DIGITS:.{_EXACT_DIGITS}f}"
    digits = min(_EXACT_DIGITS, max(2, math.ceil(-math.log10(size)) + 1))
    text = f"{size:.{digits}f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")  # as Intl's minimum 2, maximum n decimals
    return f"{sign}${whole}.{fraction}"
