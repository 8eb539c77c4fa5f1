"""Budgets as stored: clients' columns, the ``budgets`` table (global, providers), and the spend
since a time read back from the rollup and the log.

Plain functions of a connection; writes run inside the caller's transaction (see
``storage.clients``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.budgets import DEFAULT_WARN_PERCENT, check_amount, check_warn_percent
from storage.sql import Connection
from storage.values import as_int, as_opt_float

__all__ = [
    "ClientBudget",
    "ScopeBudget",
    "SpendRow",
    "client_budgets",
    "get_client_budget",
    "scope_budgets",
    "set_client_budget",
    "set_global_budget",
    "set_provider_budget",
    "spend_since",
]


@dataclass(frozen=True, slots=True)
class ClientBudget:
    """A client's budgets (None: none) and warning threshold."""

    client_id: str
    name: str
    day_usd: float | None
    month_usd: float | None
    warn_percent: int


@dataclass(frozen=True, slots=True)
class ScopeBudget:
    """The global budget (``scope`` 'global', ``name`` '') or a provider's (monthly only)."""

    scope: str
    name: str
    day_usd: float | None
    month_usd: float | None
    warn_percent: int


@dataclass(frozen=True, slots=True)
class SpendRow:
    """What one (client, provider) pair spent since a time: priced USD, calls with no price."""

    client_id: str
    provider: str
    cost_usd: float
    unpriced_calls: int


def _client_budget(row: Sequence[object]) -> ClientBudget:
    client_id, name, day, month, warn = row
    return ClientBudget(
        client_id=str(client_id),
        name=str(name),
        day_usd=as_opt_float(day),
        month_usd=as_opt_float(month),
        warn_percent=as_int(warn),
    )


_CLIENT_BUDGET_SELECT = (
    "SELECT id, name, budget_day_usd, budget_month_usd, budget_warn_percent FROM clients"
)


def client_budgets(conn: Connection) -> list[ClientBudget]:
    """Every active client that has a budget."""
    rows = conn.execute(
        _CLIENT_BUDGET_SELECT + " WHERE is_active = 1"
        " AND (budget_day_usd IS NOT NULL OR budget_month_usd IS NOT NULL) ORDER BY id"
    ).fetchall()
    return [_client_budget(row) for row in rows]


def get_client_budget(conn: Connection, client_id: str) -> ClientBudget:
    """One client's budgets; LookupError if the client is unknown."""
    rows = conn.execute(_CLIENT_BUDGET_SELECT + " WHERE id = ?", (client_id,)).fetchall()
    if not rows:
        raise LookupError(f"unknown client: {client_id}")
    return _client_budget(rows[0])


def set_client_budget(
    conn: Connection,
    client_id: str,
    *,
    day_usd: object = ...,
    month_usd: object = ...,
    warn_percent: object = ...,
    now_ms: int,
) -> ClientBudget:
    """Change the budgets given (``...``: unchanged; None or 0: no budget); return them after.

    ValueError naming the field for a bad value (nothing is written); LookupError if the client
    is unknown.
    """
    changes: dict[str, object] = {}
    if day_usd is not ...:
        changes["budget_day_usd"] = check_amount(day_usd, "budget_day_usd")
    if month_usd is not ...:
        changes["budget_month_usd"] = check_amount(month_usd, "budget_month_usd")
    if warn_percent is not ...:
        changes["budget_warn_percent"] = check_warn_percent(warn_percent, "budget_warn_percent")
    current = get_client_budget(conn, client_id)
    if changes:
        # Column names come from the fixed set above, never from the caller.
        assignments = ", ".join(f"{column} = ?" for column in changes)
        conn.execute(
            f"UPDATE clients SET {assignments}, updated_at = ? WHERE id = ?",
            (*changes.values(), now_ms, client_id),
        )
        current = get_client_budget(conn, client_id)
    return current


def scope_budgets(conn: Connection) -> list[ScopeBudget]:
    """The global budget (always, possibly with no limits) and every provider's stored one."""
    rows = conn.execute(
        "SELECT scope, name, day_usd, month_usd, warn_percent FROM budgets ORDER BY scope, name"
    ).fetchall()
    found = [
        ScopeBudget(
            scope=str(scope),
            name=str(name),
            day_usd=as_opt_float(day),
            month_usd=as_opt_float(month),
            warn_percent=as_int(warn),
        )
        for scope, name, day, month, warn in rows
    ]
    if not any(budget.scope == "global" for budget in found):
        found.insert(0, ScopeBudget("global", "", None, None, DEFAULT_WARN_PERCENT))
    return found


def _put(
    conn: Connection,
    scope: str,
    name: str,
    day: float | None,
    month: float | None,
    warn: int,
    now_ms: int,
) -> ScopeBudget:
    conn.execute(
        "INSERT INTO budgets (scope, name, day_usd, month_usd, warn_percent, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, name) DO UPDATE SET"
        " day_usd = excluded.day_usd, month_usd = excluded.month_usd,"
        " warn_percent = excluded.warn_percent, updated_at = excluded.updated_at",
        (scope, name, day, month, warn, now_ms),
    )
    return ScopeBudget(scope, name, day, month, warn)


def set_global_budget(
    conn: Connection, *, day_usd: object, month_usd: object, warn_percent: object, now_ms: int
) -> ScopeBudget:
    """Set the gateway-wide budgets (None or 0: none); ValueError naming a bad field."""
    day = check_amount(day_usd, "day_usd")
    month = check_amount(month_usd, "month_usd")
    warn = check_warn_percent(warn_percent)
    return _put(conn, "global", "", day, month, warn, now_ms)


def set_provider_budget(
    conn: Connection, provider: str, *, month_usd: object, warn_percent: object, now_ms: int
) -> ScopeBudget:
    """Set one provider's monthly budget (None or 0: none); ValueError naming a bad field."""
    if not isinstance(provider, str) or not provider:
        raise ValueError("provider must be a name")
    month = check_amount(month_usd, "month_usd")
    warn = check_warn_percent(warn_percent)
    return _put(conn, "provider", provider, None, month, warn, now_ms)


def spend_since(conn: Connection, since_ms: int) -> list[SpendRow]:
    """Priced spend (from the hourly rollup: ``since_ms`` is an hour boundary) and unpriced calls
    (calls with usage but no cost, from the log) per client and provider since ``since_ms``."""
    spent: dict[tuple[str, str], list[float]] = {}
    for client_id, provider, cost in conn.execute(
        "SELECT client_id, provider, sum(cost_usd) FROM usage_hourly WHERE hour_ms >= ?"
        " GROUP BY client_id, provider",
        (since_ms,),
    ).fetchall():
        spent.setdefault((str(client_id), str(provider)), [0.0, 0])[0] = as_opt_float(cost) or 0.0
    for client_id, provider, calls in conn.execute(
        "SELECT client_id, provider, count(*) FROM llm_requests WHERE ts_ms >= ?"
        " AND cost_usd IS NULL"
        " AND (coalesce(prompt_tokens, 0) > 0 OR coalesce(completion_tokens, 0) > 0)"
        " GROUP BY client_id, provider",
        (since_ms,),
    ).fetchall():
        spent.setdefault((str(client_id), str(provider)), [0.0, 0])[1] = as_int(calls)
    return [
        SpendRow(client_id, provider, float(cost), int(calls))
        for (client_id, provider), (cost, calls) in sorted(spent.items())
    ]
