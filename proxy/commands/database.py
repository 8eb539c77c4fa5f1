"""Running a subcommand against the configured database, even beside a running server.

The database is ``[storage] url``'s PostgreSQL when one is configured, else the SQLite file. On
SQLite, WAL lets another process write beside the server, and a long busy timeout waits out the
server's write batches instead of failing; each change runs in its own ``BEGIN IMMEDIATE``
transaction (``BEGIN`` on PostgreSQL), so lock waits happen at BEGIN. Every failure is printed in
one line, a URL without its password.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from proxy.commands.errors import UsageError, fail
from proxy.config import Config
from storage.sql import Connection

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
    """Open the configured database (PostgreSQL at ``[storage] url``, else the SQLite file),
    migrated; run ``action``; print its failure in one line (the URL without its password)."""
    # Imported here: only the commands that touch the database pay for these.
    from storage import SchemaTooNewError
    from storage.connection import BusyWaits
    from storage.database import configured_database
    from storage.sql import DATABASE_ERRORS

    # Every failure surfaces as an exception printed in one line below; SQLite's own log (routed
    # to Python logging by apsw's best practice) would only repeat it in several.
    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr, force=True)
    if not config.storage.url and config.server.database == ":memory:":
        return fail("server.database is ':memory:': there is nothing stored to manage")
    # On SQLite, WAL lets this process write beside a running server; the long busy timeout
    # waits out the server's write batches instead of failing.
    database = configured_database(config, busy_timeout_ms=10_000)
    where = database.describe()
    try:
        # Migrated: a fresh install may create its first client before the first `serve`.
        conn = database.open_writer(BusyWaits())
    except DATABASE_ERRORS as exc:
        return fail(f"cannot open database {where}: {_one_line(exc)}")
    except SchemaTooNewError as exc:
        return fail(f"database {where}: {exc}")
    try:
        return action(conn)
    except (UsageError, LookupError, ValueError) as exc:
        return fail(str(exc))
    except DATABASE_ERRORS as exc:
        return fail(f"database {where}: {_one_line(exc)}")
    except SchemaTooNewError as exc:
        return fail(f"database {where}: {exc}")
    finally:
        conn.close()


def _one_line(exc: BaseException) -> str:
    # psycopg's messages span lines (a DETAIL, a HINT); fail() joins them into one.
    return str(exc).strip() or type(exc).__name__


def write(conn: Connection, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` in its own ``BEGIN IMMEDIATE`` transaction, so lock waits happen at BEGIN."""
    from storage.transaction import in_immediate_transaction

    return in_immediate_transaction(conn, fn)


def current_ms() -> int:
    """The time now in milliseconds since the epoch, as the database stores it."""
    return int(time.time() * 1000)
