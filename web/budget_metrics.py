"""The budget families of ``/metrics``: refusals per scope, and the spend and limit of the
global and provider budgets (clients' are left out: one series each would be unbounded)."""

from __future__ import annotations

from actors.budget_keeper import BudgetKeeper
from web.prometheus_text import Exposition

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
        [
            (
                (("scope", b.key.scope), ("name", b.name), ("period", b.key.period)),
                spent,
            )
            for b, spent in figures
        ],
    )
    out.gauge(
        "llm_proxy_budget_limit_usd",
        "The global and each provider's budget limit.",
        [
            ((("scope", b.key.scope), ("name", b.name), ("period", b.key.period)), b.limit_usd)
            for b, _spent in figures
        ],
    )
