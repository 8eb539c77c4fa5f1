"""The budget families of ``/metrics``: refusals per scope, and the spend and limit of the
global and provider budgets (clients' are left out: one series each would be unbounded)."""

from __future__ import annotations

from actors.budget_keeper import BudgetKeeper
from proxy.budgets import Budget
from web.prometheus_text import Exposition, Labels

__all__ = ["write_budget_metrics"]


def write_budget_metrics(out: Exposition, keeper: BudgetKeeper) -> None:
    """Add the budget families to ``out``."""
    stats = keeper.statistics()
    out.counter(
        "llm_proxy_budget_refusals_total",
        "Calls refused with 429 budget_exceeded, by the scope of the budget (a provider's refusal"
        " may still have been served by a fallback route).",
        [((("scope", scope),), count) for scope, count in sorted(stats.refusals.items())],
    )
    figures = keeper.fleet_budgets()
    out.gauge(
        "llm_proxy_budget_spent_usd",
        "What the global and each provider's budget spent this period, as this process counts.",
        [(_labels(b), spent) for b, spent in figures],
    )
    out.gauge(
        "llm_proxy_budget_limit_usd",
        "The global and each provider's budget limit.",
        [(_labels(b), b.limit_usd) for b, _spent in figures],
    )


def _labels(budget: Budget) -> Labels:
    """``scope`` and ``period``, and ``provider`` for a provider's budget."""
    key = budget.key
    if key.scope == "provider":
        return (("scope", key.scope), ("provider", key.id), ("period", key.period))
    return (("scope", key.scope), ("period", key.period))
