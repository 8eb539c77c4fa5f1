"""``llm-proxy backup``: a checked copy of the database, taken while the server runs.

The copy is made with ``VACUUM INTO`` from a read-only connection, so the backup never writes to
the live database; how to restore is in the command's help (``_RESTORE_HELP``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from proxy.commands.database import current_ms, database_options
from proxy.commands.errors import fail
from proxy.config import Config

__all__ = ["add_parser", "run"]

_RESTORE_HELP = """\
The copy is taken online, consistent while the server keeps writing (VACUUM INTO from a read-only
connection), checked (PRAGMA quick_check) and private (mode 0600). Without PATH it goes to
backups/llm-proxy-YYYYmmdd-HHMMSS.db beside the database.

To restore: stop the service (systemctl stop llm-proxy); copy the backup over the database file
with cp (writing into the existing file keeps its owner and mode, which the service needs);
remove the database's -wal and -shm files if any are left (they belong to the replaced data);
start the service again (systemctl start llm-proxy).
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``backup`` subcommand, whose help says how to restore."""
    backup = commands.add_parser(
        "backup",
        parents=[database_options()],
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


def run(args: argparse.Namespace, config: Config) -> int:
    """Copy the configured database with VACUUM INTO from a read-only connection."""
    import apsw

    from storage import open_connection
    from storage.backup import BackupError, backup_database

    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr, force=True)
    path = config.server.database
    if path == ":memory:":
        return fail("server.database is ':memory:': there is nothing stored to back up")
    if not os.path.isfile(path):
        return fail(f"no database at {path} (see --database and --config)")
    try:
        # Read-only: the backup never writes to the live database; the long busy timeout waits
        # out a checkpoint of the running server.
        conn = open_connection(path, readonly=True, busy_timeout_ms=10_000)
    except apsw.Error as exc:
        return fail(f"cannot open database {path}: {exc}")
    try:
        result = backup_database(conn, path, now_ms=current_ms(), target=args.path)
    except (OSError, ValueError) as exc:
        return fail(f"backup failed: {exc}")
    except (apsw.Error, BackupError) as exc:
        return fail(f"backup of {path} failed: {exc}")
    finally:
        conn.close()
    print(f"backed up {path}: {result.size_bytes:,} bytes", file=sys.stderr)
    print(result.path)  # stdout carries the path alone, for scripts
    return 0
