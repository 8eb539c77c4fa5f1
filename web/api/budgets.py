"""``/api/budgets``: the gateway's and each provider's spend budgets, and every budget past its
warning threshold (what the dashboard's banner shows)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from functools import partial

import msgspec
from quart import Blueprint, Response

from actors.budget_keeper import BudgetKeeper
from proxy.budgets import DEFAULT_WARN_PERCENT
from proxy.errors import InvalidRequest, NotFound
from storage.budgets import ScopeBudget, set_global_budget, set_provider_budget
from storage.sql import Connection
from storage.writer import StorageWriter
from web.api.common import AuditLog, deps_of, json_response, now_ms, read_body

budgets = Blueprint("api_budgets", __name__, url_prefix="/api")


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetsApi:
    """What ``/api/budgets`` uses."""

    writer: StorageWriter
    keeper: BudgetKeeper
    audit: AuditLog
    providers: Collection[str]  # the configured providers: a budget for another is a 404


def _deps() -> BudgetsApi:
    return deps_of(BudgetsApi)


class GlobalBudgetBody(msgspec.Struct, forbid_unknown_fields=True):
    """The gateway-wide budgets; null or 0: none."""

    day_usd: float | None = None
    month_usd: float | None = None
    warn_percent: int = DEFAULT_WARN_PERCENT


class ProviderBudgetBody(msgspec.Struct, forbid_unknown_fields=True):
    """A provider's monthly budget; null or 0: none."""

    month_usd: float | None = None
    warn_percent: int = DEFAULT_WARN_PERCENT


def _field_of(exc: ValueError) -> str | None:
    first = str(exc).split(" ", 1)[0]
    return first if first in ("day_usd", "month_usd", "warn_percent") else None


def _stored(scope: str, name: str) -> ScopeBudget | None:
    for budget in _deps().keeper.scope_budgets():
        if (budget.scope, budget.name) == (scope, name):
            return budget
    return None


def _view() -> dict[str, object]:
    keeper = _deps().keeper
    own = _stored("global", "")
    providers: dict[str, object] = {}
    for name in sorted(_deps().providers):
        budget = _stored("provider", name)
        providers[name] = {
            "month_usd": budget.month_usd if budget else None,
            "warn_percent": budget.warn_percent if budget else DEFAULT_WARN_PERCENT,
            "spend": keeper.spend("provider", name),
        }
    return {
        "global": {
            "day_usd": own.day_usd if own else None,
            "month_usd": own.month_usd if own else None,
            "warn_percent": own.warn_percent if own else DEFAULT_WARN_PERCENT,
            "spend": keeper.spend("global", ""),
        },
        "providers": providers,
        "alerts": keeper.alerts(),
    }


@budgets.get("/budgets")
async def show() -> Response:
    """Every budget with its spend, and the alerts; any signed-in user may read it."""
    return json_response(_view())


@budgets.put("/budgets/global")
async def put_global() -> Response:
    body = await read_body(GlobalBudgetBody)
    return await _store(
        partial(
            set_global_budget,
            day_usd=body.day_usd,
            month_usd=body.month_usd,
            warn_percent=body.warn_percent,
            now_ms=now_ms(),
        ),
        "global",
    )


@budgets.put("/budgets/providers/<name>")
async def put_provider(name: str) -> Response:
    if name not in _deps().providers:
        raise NotFound(f"No provider named {name!r}.", code="provider_not_found")
    body = await read_body(ProviderBudgetBody)
    return await _store(
        partial(
            set_provider_budget,
            provider=name,
            month_usd=body.month_usd,
            warn_percent=body.warn_percent,
            now_ms=now_ms(),
        ),
        f"provider:{name}",
    )


async def _store(write: Callable[[Connection], ScopeBudget], target: str) -> Response:
    """Store a budget (400 naming a bad field), tell the keeper at once, audit it; the view."""
    try:
        stored = await _deps().writer.execute(write)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid budget: {exc}.", param=_field_of(exc)) from None
    await _deps().keeper.refresh()
    await _deps().audit.record("budget.update", target, dataclasses.asdict(stored))
    return json_response(_view())
