"""The ``llm-proxy`` command line (design §9): its options, the config, and the dispatch.

``serve``, ``check-config`` and ``version`` are here; the subcommands that work on the data
(``clients``, ``users``, ``backup``, ``storage migrate``) and ``monitor`` are in
:mod:`proxy.commands`, one module each.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from proxy import __version__
from proxy.commands import backup, budgets, clients, migrate_storage, monitor, users
from proxy.config import Config, ConfigError, load_config, render_config, with_overrides

# The commands that create files (the database and its -wal/-shm, backups, the first admin's
# password): what they create is their user's only, whatever umask they were started with.
_PRIVATE_UMASK = 0o077
_WRITING_COMMANDS = frozenset({"serve", "clients", "users", "backup", "storage", "budgets"})


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

    clients.add_parser(commands)
    budgets.add_parser(commands)
    users.add_parser(commands)
    backup.add_parser(commands)
    migrate_storage.add_parser(commands)
    monitor.add_parser(commands)

    commands.add_parser("version", help="print the version")
    return parser


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.command == "serve":
        config = with_overrides(config, host=args.host, port=args.port, database=args.database)
    elif args.command in ("clients", "users", "backup", "budgets"):
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
        return clients.run(args, config)
    if args.command == "budgets":
        return budgets.run(args, config)
    if args.command == "users":
        return users.run(args, config)
    if args.command == "backup":
        return backup.run(args, config)
    if args.command == "storage":
        return migrate_storage.run(args, config)
    if args.command == "monitor":
        return monitor.run(args, config)
    from proxy.serve import serve

    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
