"""``llm-proxy users``: dashboard users, managed on the database directly.

``reset-password`` sets a one-time password, printed once alone on stdout, that must be changed at
the next sign-in; the user's open sessions end within seconds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.commands.database import current_ms, database_options, on_database, write
from proxy.commands.fleet_notice import announce_change
from proxy.config import Config
from storage.sql import Connection

if TYPE_CHECKING:
    pass

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``users`` subcommand and its actions (reset-password, list)."""
    common = database_options()
    users = commands.add_parser(
        "users",
        help="manage dashboard users",
        description="Manage dashboard users, also while the server runs.",
    )
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    reset = actions.add_parser(
        "reset-password",
        parents=[common],
        help="set a one-time password (printed once on stdout) that must be changed at sign-in",
    )
    reset.add_argument("username", metavar="USERNAME")
    actions.add_parser("list", parents=[common], help="one line per user")


def run(args: argparse.Namespace, config: Config) -> int:
    """Run a ``users`` action against the configured database, even beside a running server;
    a change is announced to the gateways sharing the configured Redis."""
    status = on_database(config, lambda conn: _USER_ACTIONS[args.users_command](conn, args))
    if status == 0 and args.users_command == "reset-password":
        announce_change(config, "users", args.username)
    return status


def _users_reset_password(conn: Connection, args: argparse.Namespace) -> int:
    from proxy.passwords import Passwords, generate_password
    from storage import users

    password = generate_password()
    password_hash = Passwords().hash_now(password)
    user = write(
        conn,
        lambda c: users.set_password(
            c,
            args.username,
            password_hash,
            must_change_password=True,
            now_ms=current_ms(),
        ),
    )
    print(
        f"reset the password of {user.username} ({user.role}); it must be changed at the next "
        "sign-in, and the user's open sessions end within seconds\n"
        "pass the one-time password on now: it is not shown again",
        file=sys.stderr,
    )
    print(password)  # stdout carries the password alone
    return 0


def _users_list(conn: Connection, args: argparse.Namespace) -> int:
    from storage import users

    for user in users.list_users(conn):
        flags = " must-change-password" if user.must_change_password else ""
        print(f"{user.username}\t{user.role}{flags}\t{user.display_name}")
    return 0


_USER_ACTIONS: dict[str, Callable[[Connection, argparse.Namespace], int]] = {
    "reset-password": _users_reset_password,
    "list": _users_list,
}
