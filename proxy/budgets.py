"""Spend budgets: their periods (UTC days and calendar months), limits and states, pure arithmetic.

A budget is a USD limit on what one scope (a client, the whole gateway, one provider) spends in
one period; it warns at a percent of the limit and refuses calls once spent plus reserved reaches
it. Everything here is a function of the values it is given, the time included.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

__all__ = [
    "DEFAULT_WARN_PERCENT",
    "MAX_BUDGET_USD",
    "Budget",
    "BudgetKey",
    "BudgetState",
    "Period",
    "Scope",
    "check_amount",
    "check_warn_percent",
    "describe",
    "iso_utc",
    "period_bounds",
    "state_of",
]

DEFAULT_WARN_PERCENT: Final = 80
MAX_BUDGET_USD: Final = 1e9
"""Above this a budget is a typo, not a limit."""

Scope = Literal["client", "global", "provider"]
Period = Literal["day", "month"]


class BudgetState(enum.Enum):
    """Where a budget's spend stands against its limit (ordered: the worst is the greatest)."""

    OK = "ok"
    WARNING = "warning"
    EXCEEDED = "exceeded"

    @property
    def rank(self) -> int:
        """0, 1, 2: ok, warning, exceeded."""
        return _RANKS[self]


_RANKS: Final = {BudgetState.OK: 0, BudgetState.WARNING: 1, BudgetState.EXCEEDED: 2}


@dataclass(frozen=True, slots=True)
class BudgetKey:
    """Which budget: a scope, the thing in it (a client id, a provider name, '' for global) and
    the period."""

    scope: Scope
    id: str
    period: Period


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget: its key, a display name, its limit and warning threshold."""

    key: BudgetKey
    name: str
    limit_usd: float
    warn_percent: int

    @property
    def warn_usd(self) -> float:
        """The spend at which it warns."""
        return self.limit_usd * self.warn_percent / 100


def check_amount(value: object, what: str) -> float | None:
    """A budget amount: None (no budget) or a finite number in (0, 1e9]; 0 also means none.

    ValueError naming ``what`` otherwise.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number of USD or null, got {value!r}")
    amount = float(value)
    if math.isnan(amount) or math.isinf(amount):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if amount < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    if amount > MAX_BUDGET_USD:
        raise ValueError(f"{what} must be at most {MAX_BUDGET_USD:.0f} USD, got {value!r}")
    return None if amount == 0 else amount


def check_warn_percent(value: object, what: str = "warn_percent") -> int:
    """A warning threshold: a whole number from 1 to 100; ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ValueError(f"{what} must be a whole number from 1 to 100, got {value!r}")
    return value


def period_bounds(period: Period, now_ms: int) -> tuple[int, int]:
    """The UTC day or calendar month holding ``now_ms``: its start and the next one's, in ms."""
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        start_ms = int(start.timestamp() * 1000)
        return start_ms, start_ms + 86_400_000
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else (start.replace(month=start.month + 1))
    )
    return int(start.timestamp() * 1000), int(following.timestamp() * 1000)


def state_of(budget: Budget, spent_usd: float) -> BudgetState:
    """The state of ``budget`` at ``spent_usd``."""
    # A nano-dollar of slack: float sums of cents fall a hair short (0.1 * 10 < 1.0).
    if spent_usd >= budget.limit_usd - 1e-9:
        return BudgetState.EXCEEDED
    if spent_usd >= budget.warn_usd - 1e-9:
        return BudgetState.WARNING
    return BudgetState.OK


def iso_utc(ms: int) -> str:
    """``ms`` as ISO-8601 UTC to the second."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_PERIOD_WORDS: Final = {"day": "daily", "month": "monthly"}


def describe(budget: Budget) -> str:
    """How a message names the budget: "client 'acme' daily", "global monthly", "provider
    'openai' monthly"."""
    period = _PERIOD_WORDS[budget.key.period]
    if budget.key.scope == "global":
        return f"global {period}"
    return f"{budget.key.scope} {budget.name!r} {period}"
