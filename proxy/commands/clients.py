"""``llm-proxy clients``: API clients and their keys, managed on the database directly.

A new key is printed once, alone on stdout (``KEY=$(llm-proxy clients create NAME)`` captures it),
and never again: only its digest is stored. Key ids are integers and client ids start with
``cl_``, so ``revoke`` tells a key from a client by its argument.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from proxy.commands.database import current_ms, database_options, on_database, write
from proxy.commands.errors import UsageError
from proxy.commands.fleet_notice import announce_change
from proxy.config import Config
from storage.sql import Connection

if TYPE_CHECKING:
    from storage.clients import ClientRow

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``clients`` subcommand and its actions (create, update, list, keys, add-key,
    revoke)."""
    common = database_options()

    clients = commands.add_parser(
        "clients",
        help="manage API clients and their keys",
        description="Manage API clients and their keys, also while the server runs.",
    )
    actions = clients.add_subparsers(dest="clients_command", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create", parents=[common], help="create a client; prints its key once on stdout"
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--rpm", metavar="N", help="requests per minute (default: the configured default; 0: none)"
    )
    create.add_argument("--tpm", metavar="N", help="tokens per minute (default and 0: no limit)")
    create.add_argument("--description", default="", metavar="TEXT")
    create.add_argument("--budget-day", metavar="USD", help="USD per UTC day (0: no daily budget)")
    create.add_argument(
        "--budget-month", metavar="USD", help="USD per UTC calendar month (0: no monthly budget)"
    )
    create.add_argument(
        "--budget-warn", metavar="PCT", help="warn at this percent of a budget (1-100; default 80)"
    )

    update = actions.add_parser(
        "update", parents=[common], help="rename a client or change its description or limits"
    )
    update.add_argument("client_id", metavar="CLIENT_ID")
    update.add_argument("--name", metavar="NAME", help="its new name")
    update.add_argument("--description", metavar="TEXT")
    update.add_argument(
        "--rpm",
        metavar="N",
        help="requests per minute ('default': the configured default; 0: none)",
    )
    update.add_argument("--tpm", metavar="N", help="tokens per minute (0: no limit)")
    update.add_argument("--budget-day", metavar="USD", help="USD per UTC day (0: no daily budget)")
    update.add_argument(
        "--budget-month", metavar="USD", help="USD per UTC calendar month (0: no monthly budget)"
    )
    update.add_argument(
        "--budget-warn", metavar="PCT", help="warn at this percent of a budget (1-100; default 80)"
    )

    actions.add_parser("list", parents=[common], help="one line per client")

    keys = actions.add_parser("keys", parents=[common], help="one line per key of a client")
    keys.add_argument("client_id", metavar="CLIENT_ID")

    add_key = actions.add_parser(
        "add-key", parents=[common], help="add a key to a client; prints it once on stdout"
    )
    add_key.add_argument("client_id", metavar="CLIENT_ID")
    add_key.add_argument("--name", default="", metavar="TEXT", help="a label for the key")

    revoke = actions.add_parser(
        "revoke",
        parents=[common],
        help="revoke a key (a number), or deactivate a client and revoke all its keys",
    )
    revoke.add_argument("target", metavar="CLIENT_ID|KEY_ID")


def run(args: argparse.Namespace, config: Config) -> int:
    """Run a ``clients`` action against the configured database, even beside a running server;
    a change is announced to the gateways sharing the configured Redis."""
    status = on_database(config, lambda conn: _CLIENT_ACTIONS[args.clients_command](conn, args))
    if status == 0 and args.clients_command in _CHANGING:
        announce_change(config, "clients", getattr(args, "client_id", None))
    return status


_CHANGING = frozenset({"create", "update", "add-key", "revoke"})


def _iso(ms: int | None) -> str:
    """A timestamp as ISO-8601 UTC to the second, or "never"."""
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _limit(value: str | None, flag: str) -> int | None:
    """A ``--rpm``/``--tpm`` value: None when not given, else a whole number >= 0."""
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"{flag} must be a whole number, got {value!r}") from None
    if number < 0:
        raise UsageError(f"{flag} must not be negative, got {number}")
    return number


def _limits_text(rpm: int | None, tpm: int | None) -> str:
    return f"rpm={'default' if rpm is None else rpm} tpm={'none' if tpm is None else tpm}"


def _usd(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _budget_text(client: ClientRow) -> str:
    """`` budget_day=… budget_month=… budget_warn=…%``, or nothing for a client without one."""
    if client.budget_day_usd is None and client.budget_month_usd is None:
        return ""
    return (
        f" budget_day={_usd(client.budget_day_usd)}"
        f" budget_month={_usd(client.budget_month_usd)}"
        f" budget_warn={client.budget_warn_percent}%"
    )


def _budget_changes(args: argparse.Namespace) -> dict[str, object]:
    """The ``--budget-*`` values given, checked, by ``set_client_budget``'s names."""
    from proxy.budgets import check_amount, check_warn_percent

    changes: dict[str, object] = {}
    try:
        if args.budget_day is not None:
            changes["day_usd"] = check_amount(
                _number(args.budget_day, "--budget-day"), "--budget-day"
            )
        if args.budget_month is not None:
            changes["month_usd"] = check_amount(
                _number(args.budget_month, "--budget-month"), "--budget-month"
            )
        if args.budget_warn is not None:
            changes["warn_percent"] = check_warn_percent(
                _whole(args.budget_warn, "--budget-warn"), "--budget-warn"
            )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return changes


def _number(value: str, flag: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"{flag} must be a number of USD, got {value!r}") from None


def _whole(value: str, flag: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{flag} must be a whole number from 1 to 100, got {value!r}") from None


def _audit(conn: Connection, action: str, target: str, detail: dict[str, object]) -> None:
    """Record a CLI change in the audit log, as the dashboard's are (by user "cli")."""
    from storage.audit import record_audit

    record_audit(
        conn, username="cli", action=action, target=target, detail=detail, now_ms=current_ms()
    )


def _clients_create(conn: Connection, args: argparse.Namespace) -> int:
    from storage import clients
    from storage.budgets import set_client_budget

    rpm = _limit(args.rpm, "--rpm")
    tpm = _limit(args.tpm, "--tpm")
    budget = _budget_changes(args)

    def create(c: Connection) -> tuple[clients.ClientRow, clients.TokenRow, str]:
        client, token, plain = clients.create_client(
            c,
            name=args.name,
            description=args.description,
            rate_limit_per_minute=rpm,
            tokens_per_minute=tpm,
            now_ms=current_ms(),
        )
        if budget:
            set_client_budget(c, client.id, now_ms=current_ms(), **budget)
            _audit(c, "client.budget", client.id, budget)
        return clients.get_client(c, client.id), token, plain

    client, token, plain = write(conn, create)
    print(
        f"created client {client.id} ({client.name})"
        f" {_limits_text(client.rate_limit_per_minute, client.tokens_per_minute)}"
        f"{_budget_text(client)}\n"
        f"key {token.id}: {token.masked}\n"
        "store the key now: it is not shown again",
        file=sys.stderr,
    )
    # stdout carries the key alone, so `KEY=$(llm-proxy clients create NAME)` captures it.
    print(plain)
    return 0


def _clients_update(conn: Connection, args: argparse.Namespace) -> int:
    from storage import clients

    rpm: int | clients.Unchanged | None = clients.UNCHANGED
    if args.rpm == "default":
        rpm = None
    elif args.rpm is not None:
        try:
            rpm = _limit(args.rpm, "--rpm")
        except UsageError:
            raise UsageError(
                f"--rpm must be a whole number or 'default', got {args.rpm!r}"
            ) from None
    tpm = clients.UNCHANGED if args.tpm is None else _limit(args.tpm, "--tpm")
    from storage.budgets import set_client_budget

    budget = _budget_changes(args)
    given = (args.name, args.description, args.rpm, args.tpm)
    if all(value is None for value in given) and not budget:
        raise UsageError(
            "nothing to change: give --name, --description, --rpm, --tpm or a --budget-* option"
        )

    def update(c: Connection) -> clients.ClientRow:
        client = clients.update_client(
            c,
            args.client_id,
            now_ms=current_ms(),
            name=args.name,
            description=args.description,
            rate_limit_per_minute=rpm,
            tokens_per_minute=tpm,
        )
        if budget:
            set_client_budget(c, client.id, now_ms=current_ms(), **budget)
            _audit(c, "client.budget", client.id, budget)
            client = clients.get_client(c, client.id)
        return client

    client = write(conn, update)
    print(
        f"updated client {client.id} ({client.name})"
        f" {_limits_text(client.rate_limit_per_minute, client.tokens_per_minute)}"
        f"{_budget_text(client)}"
    )
    return 0


def _clients_list(conn: Connection, args: argparse.Namespace) -> int:
    from storage import clients

    rows = clients.list_clients(conn)
    if not rows:
        print("no clients")
    for client in rows:
        state = "active" if client.is_active else "inactive"
        print(
            f"{client.id} {client.name} {state}"
            f" {_limits_text(client.rate_limit_per_minute, client.tokens_per_minute)}"
            f"{_budget_text(client)}"
            f" keys={client.key_count} last_used={_iso(client.last_used_at)}"
        )
    return 0


def _clients_keys(conn: Connection, args: argparse.Namespace) -> int:
    from storage import clients

    rows = clients.list_keys(conn, args.client_id)
    if not rows:
        print("no keys")
    for token in rows:
        state = "active" if token.revoked_at is None else f"revoked={_iso(token.revoked_at)}"
        line = (
            f"{token.id} {token.masked} {state} created={_iso(token.created_at)}"
            f" last_used={_iso(token.last_used_at)} {token.name}"
        )
        print(line.rstrip())
    return 0


def _clients_add_key(conn: Connection, args: argparse.Namespace) -> int:
    from storage import clients

    def add(c: Connection) -> tuple[clients.ClientRow, clients.TokenRow, str]:
        token, plain = clients.add_key(c, args.client_id, name=args.name, now_ms=current_ms())
        return clients.get_client(c, args.client_id), token, plain

    client, token, plain = write(conn, add)
    print(f"added key {token.id} ({token.masked}) to client {client.id}", file=sys.stderr)
    if not client.is_active:
        print(
            f"note: client {client.id} is inactive: the key will not authenticate until it is"
            " reactivated",
            file=sys.stderr,
        )
    print("store the key now: it is not shown again", file=sys.stderr)
    print(plain)
    return 0


def _clients_revoke(conn: Connection, args: argparse.Namespace) -> int:
    from storage import clients

    target: str = args.target
    now_ms = current_ms()
    # Key ids are integers and client ids start with "cl_", so the two cannot be confused.
    if target.isascii() and target.isdigit():
        token = write(conn, lambda c: clients.revoke_key(c, int(target), now_ms=now_ms))
        if token.revoked_at == now_ms:
            print(f"revoked key {token.id} ({token.masked}) of client {token.client_id}")
        else:
            print(
                f"key {token.id} ({token.masked}) of client {token.client_id} was already"
                f" revoked at {_iso(token.revoked_at)}"
            )
        return 0
    revoked = write(conn, lambda c: clients.revoke_client(c, target, now_ms=now_ms))
    print(f"deactivated client {target} and revoked {revoked} key{'' if revoked == 1 else 's'}")
    return 0


_CLIENT_ACTIONS: dict[str, Callable[[Connection, argparse.Namespace], int]] = {
    "create": _clients_create,
    "update": _clients_update,
    "list": _clients_list,
    "keys": _clients_keys,
    "add-key": _clients_add_key,
    "revoke": _clients_revoke,
}
