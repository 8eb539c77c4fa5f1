"""Money as the dashboard shows it: cents from a cent up, two significant digits below, so a
priced call never looks free ($0.000012, $0.0031, $1.24); ``-`` for an unpriced call."""

from __future__ import annotations

import math
from typing import Final

__all__ = ["usd"]

_CENT: Final = 0.01
_SIGNIFICANT: Final = 2


def usd(value: object) -> str:
    """``value`` US dollars as text: ``$1,234.50``, ``$0.50``, ``$0.0031``, ``$0.000012``,
    ``$0.00`` for a free call, ``-`` when unpriced (None or not a finite number)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    size = abs(value)
    sign = "-" if value < 0 else ""
    if 0 < size < _CENT:
        decimals = _SIGNIFICANT - 1 - math.floor(math.log10(size))
        rounded = round(size, decimals)
        if rounded < _CENT:  # 0.00999 rounds up to a cent: shown as one
            return f"{sign}${rounded:.{decimals}f}"
        size = rounded
    return f"{sign}${size:,.2f}"
