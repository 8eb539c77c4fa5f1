"""``llm-proxy budgets``: every spend budget with what it spent this period, and setting the
gateway's and each provider's (a client's are set with ``clients create/update --budget-*``).

Spend is read from the database (the hourly rollup's cost, the log's unpriced calls): what the
gateways have written, a second or so behind their own counts. A change is audited (by user
"cli") and announced to the gateways sharing the configured Redis; without one, each gateway
reads the budgets again within a second.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from proxy.budgets import (
    Budget,
    BudgetKey,
    Period,
    Scope,
    check_amount,
    check_warn_percent,
    iso_utc,
    period_bounds,
    state_of,
)
from proxy.commands.database import current_ms, database_options, on_database, write
from proxy.commands.errors import UsageError
from proxy.commands.fleet_notice import announce_change
from proxy.config import Config
from storage.sql import Connection

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``budgets`` subcommand and its actions (show, set-global, set-provider)."""
    common = database_options()
    budgets = commands.add_parser(
        "budgets",
        help="show spend budgets, set the global and provider ones",
        description="Show every spend budget with this period's spend; set the gateway's and"
        " each provider's (a client's: clients create/update --budget-day/--budget-month).",
    )
    actions = budgets.add_subparsers(dest="budgets_command", required=True, metavar="ACTION")
    actions.add_parser("show", parents=[common], help="one line per budget, with its spend")
    own = actions.add_parser(
        "set-global", parents=[common], help="the gateway-wide daily and monthly budgets"
    )
    own.add_argument("--day", metavar="USD", help="USD per UTC day (0: none)")
    own.add_argument("--month", metavar="USD", help="USD per UTC calendar month (0: none)")
    own.add_argument("--warn", metavar="PCT", help="warn at this percent (1-100; default 80)")
    provider = actions.add_parser(
        "set-provider", parents=[common], help="a provider's monthly budget (its bill)"
    )
    provider.add_argument("provider", metavar="NAME")
    provider.add_argument("--month", metavar="USD", help="USD per UTC calendar month (0: none)")
    provider.add_argument("--warn", metavar="PCT", help="warn at this percent (1-100; default 80)")


def run(args: argparse.Namespace, config: Config) -> int:
    """Run a ``budgets`` action on the configured database."""
    action = _ACTIONS[args.budgets_command]

    def checked(conn: Connection) -> int:
        if args.budgets_command == "set-provider" and args.provider not in config.providers:
            raise UsageError(
                f"no provider named {args.provider!r}"
                f" (configured: {', '.join(config.providers) or 'none'})"
            )
        return action(conn, args)

    status = on_database(config, checked)
    if status == 0 and args.budgets_command != "show":
        announce_change(config, "budgets", getattr(args, "provider", None))
    return status


def _amount(value: str | None, flag: str, current: float | None) -> float | None:
    if value is None:
        return current
    try:
        return check_amount(float(value), flag)
    except ValueError as exc:
        if "could not convert" in str(exc):
            raise UsageError(f"{flag} must be a number of USD, got {value!r}") from None
        raise UsageError(str(exc)) from None


def _warn(value: str | None, current: int) -> int:
    if value is None:
        return current
    try:
        return check_warn_percent(int(value), "--warn")
    except ValueError:
        raise UsageError(f"--warn must be a whole number from 1 to 100, got {value!r}") from None


def _stored(conn: Connection, scope: str, name: str) -> tuple[float | None, float | None, int]:
    from storage.budgets import scope_budgets

    for budget in scope_budgets(conn):
        if (budget.scope, budget.name) == (scope, name):
            return budget.day_usd, budget.month_usd, budget.warn_percent
    return None, None, 80


def _set_global(conn: Connection, args: argparse.Namespace) -> int:
    from storage.audit import record_audit
    from storage.budgets import set_global_budget

    def change(c: Connection) -> tuple[float | None, float | None, int]:
        day, month, warn = _stored(c, "global", "")
        values = (
            _amount(args.day, "--day", day),
            _amount(args.month, "--month", month),
            _warn(args.warn, warn),
        )
        set_global_budget(
            c, day_usd=values[0], month_usd=values[1], warn_percent=values[2], now_ms=current_ms()
        )
        detail = {"day_usd": values[0], "month_usd": values[1], "warn_percent": values[2]}
        record_audit(
            c,
            username="cli",
            action="budget.update",
            target="global",
            detail=detail,
            now_ms=current_ms(),
        )
        return values

    if args.day is None and args.month is None and args.warn is None:
        raise UsageError("nothing to change: give --day, --month or --warn")
    day, month, warn = write(conn, change)
    print(f"global budget: day={_usd(day)} month={_usd(month)} warn={warn}%")
    return 0


def _set_provider(conn: Connection, args: argparse.Namespace) -> int:
    from storage.audit import record_audit
    from storage.budgets import set_provider_budget

    def change(c: Connection) -> tuple[float | None, int]:
        _day, month, warn = _stored(c, "provider", args.provider)
        values = (_amount(args.month, "--month", month), _warn(args.warn, warn))
        set_provider_budget(
            c, args.provider, month_usd=values[0], warn_percent=values[1], now_ms=current_ms()
        )
        record_audit(
            c,
            username="cli",
            action="budget.update",
            target=f"provider:{args.provider}",
            detail={"month_usd": values[0], "warn_percent": values[1]},
            now_ms=current_ms(),
        )
        return values

    if args.month is None and args.warn is None:
        raise UsageError("nothing to change: give --month or --warn")
    month, warn = write(conn, change)
    print(f"provider {args.provider} budget: month={_usd(month)} warn={warn}%")
    return 0


def _show(conn: Connection, args: argparse.Namespace) -> int:
    from storage.budgets import client_budgets, scope_budgets, spend_since

    now = current_ms()
    budgets: list[Budget] = []

    def add(
        scope: Scope, id_: str, name: str, period: Period, limit: float | None, warn: int
    ) -> None:
        if limit is not None:
            budgets.append(Budget(BudgetKey(scope, id_, period), name, limit, warn))

    for own in scope_budgets(conn):
        if own.scope == "global":
            add("global", "", "global", "day", own.day_usd, own.warn_percent)
            add("global", "", "global", "month", own.month_usd, own.warn_percent)
        else:
            add("provider", own.name, own.name, "month", own.month_usd, own.warn_percent)
    for client in client_budgets(conn):
        add("client", client.client_id, client.name, "day", client.day_usd, client.warn_percent)
        add("client", client.client_id, client.name, "month", client.month_usd, client.warn_percent)
    if not budgets:
        print("no budgets")
        return 0
    spent: dict[tuple[str, str, str], list[float]] = {}
    periods: tuple[Period, ...] = ("day", "month")
    for period in periods:
        start, _end = period_bounds(period, now)
        for row in spend_since(conn, start):
            for scope, id_ in (
                ("client", row.client_id),
                ("global", ""),
                ("provider", row.provider),
            ):
                total = spent.setdefault((scope, id_, period), [0.0, 0])
                total[0] += row.cost_usd
                total[1] += row.unpriced_calls
    for budget in budgets:
        key = budget.key
        cost, unpriced = spent.get((key.scope, key.id, key.period), [0.0, 0])
        _start, end = period_bounds(key.period, now)
        who = "global" if key.scope == "global" else f"{key.scope} {budget.name} ({key.id})"
        if key.scope == "provider":
            who = f"provider {key.id}"
        print(
            f"{who} {key.period}: limit={budget.limit_usd:g} spent={cost:.6g}"
            f" ({100 * cost / budget.limit_usd:.0f}%) unpriced_calls={int(unpriced)}"
            f" warn={budget.warn_percent}% state={state_of(budget, cost).value}"
            f" resets={iso_utc(end)}"
        )
    return 0


def _usd(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


_ACTIONS: dict[str, Callable[[Connection, argparse.Namespace], int]] = {
    "show": _show,
    "set-global": _set_global,
    "set-provider": _set_provider,
}
