"""The ``llm-proxy`` command line (design §9)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import trio

from proxy import __version__
from proxy.config import Config, ConfigError, load_config, render_config, with_overrides

if TYPE_CHECKING:
    import apsw

T = TypeVar("T")

# The commands that create files (the database and its -wal/-shm, backups, the first admin's
# password): what they create is their user's only, whatever umask they were started with.
_PRIVATE_UMASK = 0o077
_WRITING_COMMANDS = frozenset({"serve", "clients", "users", "backup"})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-proxy", description="A self-hosted, OpenAI-compatible LLM gateway."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML config file (default: $LLM_PROXY_CONFIG)")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides server.port)")
    serve.add_argument("--database", help="SQLite file (overrides server.database)")

    check = commands.add_parser(
        "check-config", help="validate the config and print it with secrets masked"
    )
    check.add_argument("--config", help="TOML config file (default: $LLM_PROXY_CONFIG)")

    _add_clients_parser(commands)
    _add_users_parser(commands)
    _add_backup_parser(commands)
    _add_monitor_parser(commands)

    commands.add_parser("version", help="print the version")
    return parser


def _add_clients_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # The shared options go on every action: argparse lets a subcommand's default overwrite a
    # value given to its parent, so they cannot live on "clients" itself.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML config file (default: $LLM_PROXY_CONFIG)")
    common.add_argument("--database", help="SQLite file (overrides server.database)")

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


def _add_users_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML config file (default: $LLM_PROXY_CONFIG)")
    common.add_argument("--database", help="SQLite file (overrides server.database)")
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


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.command == "serve":
        config = with_overrides(config, host=args.host, port=args.port, database=args.database)
    elif args.command in ("clients", "users", "backup"):
        config = with_overrides(config, database=args.database)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"llm-proxy {__version__}")
        return 0
    if args.command in _WRITING_COMMANDS:
        os.umask(_PRIVATE_UMASK)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"llm-proxy: {exc}", file=sys.stderr)
        # serve: 1, as for every other reason it cannot start; elsewhere 2, a usage error.
        return 1 if args.command == "serve" else 2
    if args.command == "check-config":
        print(f"# {config.source}: OK")
        print(render_config(config), end="")
        return 0
    if args.command == "clients":
        return _clients(args, config)
    if args.command == "users":
        return _users(args, config)
    if args.command == "backup":
        return _backup(args, config)
    if args.command == "monitor":
        return _monitor(args, config)
    from proxy.serve import serve

    return serve(config)


# --- clients ------------------------------------------------------------------------------------


class _UsageError(Exception):
    """A bad command-line value; the message is printed as is."""


def _error(message: str) -> int:
    """Print a one-line error and return the exit status for it."""
    print(f"llm-proxy: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _clients(args: argparse.Namespace, config: Config) -> int:
    """Run a ``clients`` action against the configured database, even beside a running server."""
    return _on_database(config, lambda conn: _CLIENT_ACTIONS[args.clients_command](conn, args))


def _users(args: argparse.Namespace, config: Config) -> int:
    """Run a ``users`` action against the configured database, even beside a running server."""
    return _on_database(config, lambda conn: _USER_ACTIONS[args.users_command](conn, args))


def _on_database(config: Config, action: Callable[[apsw.Connection], int]) -> int:
    """Open the configured database (migrated), run ``action``, print its failure in one line."""
    import apsw  # only the commands that touch the database pay for it

    from storage import SchemaTooNewError, migrate, open_connection

    # Every failure surfaces as an exception printed in one line below; SQLite's own log (routed
    # to Python logging by apsw's best practice) would only repeat it in several.
    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr, force=True)
    path = config.server.database
    if path == ":memory:":
        return _error("server.database is ':memory:': there is nothing stored to manage")
    try:
        # WAL lets this process write beside a running server; the long busy timeout waits out
        # the server's write batches instead of failing.
        conn = open_connection(path, busy_timeout_ms=10_000)
    except apsw.Error as exc:
        return _error(f"cannot open database {path}: {exc}")
    try:
        # A fresh install may create its first client before the first `serve`.
        migrate(conn)
        return action(conn)
    except (_UsageError, LookupError, ValueError) as exc:
        return _error(str(exc))
    except (apsw.Error, SchemaTooNewError) as exc:
        return _error(f"database {path}: {exc}")
    finally:
        conn.close()


def _users_reset_password(conn: apsw.Connection, args: argparse.Namespace) -> int:
    from proxy.passwords import Passwords, generate_password
    from storage import users

    password = generate_password()
    password_hash = Passwords().hash_now(password)
    user = _write(
        conn,
        lambda c: users.set_password(
            c,
            args.username,
            password_hash,
            must_change_password=True,
            now_ms=_now_ms(),
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


def _users_list(conn: apsw.Connection, args: argparse.Namespace) -> int:
    from storage import users

    for user in users.list_users(conn):
        flags = " must-change-password" if user.must_change_password else ""
        print(f"{user.username}\t{user.role}{flags}\t{user.display_name}")
    return 0


_USER_ACTIONS: dict[str, Callable[[apsw.Connection, argparse.Namespace], int]] = {
    "reset-password": _users_reset_password,
    "list": _users_list,
}


def _write(conn: apsw.Connection, fn: Callable[[apsw.Connection], T]) -> T:
    """Run ``fn`` in its own ``BEGIN IMMEDIATE`` transaction, so lock waits happen at BEGIN."""
    from storage.transaction import in_immediate_transaction

    return in_immediate_transaction(conn, fn)


def _now_ms() -> int:
    return int(time.time() * 1000)


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
        raise _UsageError(f"{flag} must be a whole number, got {value!r}") from None
    if number < 0:
        raise _UsageError(f"{flag} must not be negative, got {number}")
    return number


def _limits_text(rpm: int | None, tpm: int | None) -> str:
    return f"rpm={'default' if rpm is None else rpm} tpm={'none' if tpm is None else tpm}"


def _clients_create(conn: apsw.Connection, args: argparse.Namespace) -> int:
    from storage import clients

    rpm = _limit(args.rpm, "--rpm")
    tpm = _limit(args.tpm, "--tpm")
    client, token, plain = _write(
        conn,
        lambda c: clients.create_client(
            c,
            name=args.name,
            description=args.description,
            rate_limit_per_minute=rpm,
            tokens_per_minute=tpm,
            now_ms=_now_ms(),
        ),
    )
    print(
        f"created client {client.id} ({client.name})"
        f" {_limits_text(client.rate_limit_per_minute, client.tokens_per_minute)}\n"
        f"key {token.id}: {token.masked}\n"
        "store the key now: it is not shown again",
        file=sys.stderr,
    )
    # stdout carries the key alone, so `KEY=$(llm-proxy clients create NAME)` captures it.
    print(plain)
    return 0


def _clients_list(conn: apsw.Connection, args: argparse.Namespace) -> int:
    from storage import clients

    rows = clients.list_clients(conn)
    if not rows:
        print("no clients")
    for client in rows:
        state = "active" if client.is_active else "inactive"
        print(
            f"{client.id} {client.name} {state}"
            f" {_limits_text(client.rate_limit_per_minute, client.tokens_per_minute)}"
            f" keys={client.key_count} last_used={_iso(client.last_used_at)}"
        )
    return 0


def _clients_keys(conn: apsw.Connection, args: argparse.Namespace) -> int:
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


def _clients_add_key(conn: apsw.Connection, args: argparse.Namespace) -> int:
    from storage import clients

    def add(c: apsw.Connection) -> tuple[clients.ClientRow, clients.TokenRow, str]:
        token, plain = clients.add_key(c, args.client_id, name=args.name, now_ms=_now_ms())
        return clients.get_client(c, args.client_id), token, plain

    client, token, plain = _write(conn, add)
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


def _clients_revoke(conn: apsw.Connection, args: argparse.Namespace) -> int:
    from storage import clients

    target: str = args.target
    now_ms = _now_ms()
    # Key ids are integers and client ids start with "cl_", so the two cannot be confused.
    if target.isascii() and target.isdigit():
        token = _write(conn, lambda c: clients.revoke_key(c, int(target), now_ms=now_ms))
        if token.revoked_at == now_ms:
            print(f"revoked key {token.id} ({token.masked}) of client {token.client_id}")
        else:
            print(
                f"key {token.id} ({token.masked}) of client {token.client_id} was already"
                f" revoked at {_iso(token.revoked_at)}"
            )
        return 0
    revoked = _write(conn, lambda c: clients.revoke_client(c, target, now_ms=now_ms))
    print(f"deactivated client {target} and revoked {revoked} key{'' if revoked == 1 else 's'}")
    return 0


_CLIENT_ACTIONS: dict[str, Callable[[apsw.Connection, argparse.Namespace], int]] = {
    "create": _clients_create,
    "list": _clients_list,
    "keys": _clients_keys,
    "add-key": _clients_add_key,
    "revoke": _clients_revoke,
}


# --- backup and monitor -------------------------------------------------------------------------

_RESTORE_HELP = """\
The copy is taken online, consistent while the server keeps writing (VACUUM INTO from a read-only
connection), checked (PRAGMA quick_check) and private (mode 0600). Without PATH it goes to
backups/llm-proxy-YYYYmmdd-HHMMSS.db beside the database.

To restore: stop the service (systemctl stop llm-proxy); copy the backup over the database file
with cp (writing into the existing file keeps its owner and mode, which the service needs);
remove the database's -wal and -shm files if any are left (they belong to the replaced data);
start the service again (systemctl start llm-proxy).
"""


def _add_backup_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser(
        "backup",
        help="copy the database to a checked backup file, also while the server runs",
        description=_RESTORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backup.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="a new file (never overwritten) or a directory for the timestamped file",
    )
    backup.add_argument("--config", help="TOML config file (default: $LLM_PROXY_CONFIG)")
    backup.add_argument("--database", help="SQLite file (overrides server.database)")


def _add_monitor_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    monitor = commands.add_parser(
        "monitor",
        help="watch the calls live in the terminal",
        description=(
            "Print one line per call as the gateway logs it, with running totals, over the "
            "dashboard's WebSocket feed; reconnects when the server restarts; Ctrl-C stops."
        ),
    )
    monitor.add_argument(
        "--url",
        help="the feed (default: ws://HOST:PORT/api/ws from the config, else "
        "ws://127.0.0.1:8080/api/ws)",
    )
    monitor.add_argument("--config", help="TOML config file (default: $LLM_PROXY_CONFIG)")
    who = monitor.add_mutually_exclusive_group()
    who.add_argument(
        "--token",
        help="a dashboard session token (better: $LLM_PROXY_TOKEN, which other users cannot see)",
    )
    who.add_argument(
        "--user",
        metavar="USERNAME",
        help="sign in as USERNAME; the password is asked for, never taken from the command line",
    )


def _backup(args: argparse.Namespace, config: Config) -> int:
    """Copy the configured database with VACUUM INTO from a read-only connection."""
    import os

    import apsw

    from storage import open_connection
    from storage.backup import BackupError, backup_database

    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr, force=True)
    path = config.server.database
    if path == ":memory:":
        return _error("server.database is ':memory:': there is nothing stored to back up")
    if not os.path.isfile(path):
        return _error(f"no database at {path} (see --database and --config)")
    try:
        # Read-only: the backup never writes to the live database; the long busy timeout waits
        # out a checkpoint of the running server.
        conn = open_connection(path, readonly=True, busy_timeout_ms=10_000)
    except apsw.Error as exc:
        return _error(f"cannot open database {path}: {exc}")
    try:
        result = backup_database(conn, path, now_ms=_now_ms(), target=args.path)
    except (OSError, ValueError) as exc:
        return _error(f"backup failed: {exc}")
    except (apsw.Error, BackupError) as exc:
        return _error(f"backup of {path} failed: {exc}")
    finally:
        conn.close()
    print(f"backed up {path}: {result.size_bytes:,} bytes", file=sys.stderr)
    print(result.path)  # stdout carries the path alone, for scripts
    return 0


def _monitor(args: argparse.Namespace, config: Config) -> int:
    """Watch the live feed until Ctrl-C."""
    import getpass
    import os

    from proxy import monitor

    url = args.url or monitor.url_from_config(config.server.host, config.server.port)
    try:
        monitor.check_url(url)
        credentials = monitor.credentials_from(
            url=url,
            token=args.token,
            user=args.user,
            environ=os.environ,
            ask_password=getpass.getpass,
        )
        trio.run(monitor.run, url, credentials)
    except monitor.MonitorError as exc:
        return _error(str(exc))
    except (KeyboardInterrupt, EOFError):  # Ctrl-C or Ctrl-D at the password prompt
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
