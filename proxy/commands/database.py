"""Running a subcommand against the configured database, even beside a running server.

WAL lets another process write beside the server, and a long busy timeout waits out the server's
write batches instead of failing; each change runs in its own ``BEGIN IMMEDIATE`` transaction, so
lock waits happen at BEGIN. Every failure is printed in one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from proxy.commands.errors import UsageError, fail
from proxy.config import Config
from storage.sql import Connection

if TYPE_CHECKING:
    pass

__all__ = ["current_ms", "database_options", "on_database", "write"]

T = TypeVar("T")


def database_options() -> argparse.ArgumentParser:
    """The options every database action takes (``--config``, ``--database``), as a parent parser.

    They go on every action: argparse lets a subcommand's default overwrite a value given to its
    parent, so they cannot live on the subcommand (``clients``, ``users``) itself.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML config file (default: $LLM_PROXY_CONFIG)")
    common.add_argument("--database", help="SQLite file (overrides server.database)")
    return common


def on_database(config: Config, action: Callable[[Connection], int]) -> int:
    """Open the configured database (migrated), run ``action``, print its failure in one line."""
    import apsw  # only the commands that touch the database pay for it

    from storage import SchemaTooNewError, migrate, open_connection

    # Every failure surfaces as an exception printed in one line below; SQLite's own log (routed
    # to Python logging by apsw's best practice) would only repeat it in several.
    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr, force=True)
    path = config.server.database
    if path == ":memory:":
        return fail("server.database is ':memory:': there is nothing stored to manage")
    try:
        # WAL lets this process write beside a running server; the long busy timeout waits out
        # the server's write batches instead of failing.
        conn = open_connection(path, busy_timeout_ms=10_000)
    except apsw.Error as exc:
        return fail(f"cannot open database {path}: {exc}")
    try:
        # A fresh install may create its first client before the first `serve`.
        migrate(conn)
        return action(conn)
    except (UsageError, LookupError, ValueError) as exc:
        return fail(str(exc))
    except (apsw.Error, SchemaTooNewError) as exc:
        return fail(f"database {path}: {exc}")
    finally:
        conn.close()


def write(conn: Connection, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` in its own ``BEGIN IMMEDIATE`` transaction, so lock waits happen at BEGIN."""
    from storage.transaction import in_immediate_transaction

    return in_immediate_transaction(conn, fn)


def current_ms() -> int:
    """The time now in milliseconds since the epoch, as the database stores it."""
    return int(time.time() * 1000)
