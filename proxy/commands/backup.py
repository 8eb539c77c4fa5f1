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
With [storage] url (PostgreSQL) the backup is pg_dump's custom format, taken online, checked
(pg_restore --list) and private, as backups/llm-proxy-YYYYmmdd-HHMMSS.dump beside server.database;
restore it with pg_restore --clean --dbname=URL FILE while the gateways are stopped. Without
pg_dump, backups of a PostgreSQL database are the database's job (its own tooling, or your
provider's snapshots).

On SQLite the copy is taken online, consistent while the server keeps writing (VACUUM INTO from a
read-only connection), checked (PRAGMA quick_check) and private (mode 0600). Without PATH it goes
to backups/llm-proxy-YYYYmmdd-HHMMSS.db beside the database.

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
    """Copy the configured database: pg_dump for PostgreSQL, else VACUUM INTO from a read-only
    connection."""
    if config.storage.url:
        return _dump(args, config)
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


def _dump(args: argparse.Namespace, config: Config) -> int:
    """``pg_dump --format=custom`` of ``[storage] url`` into the backups beside server.database;
    exit 1 when there is no pg_dump (the database's own backups are the way then)."""
    from proxy.config import mask_url
    from storage.backup import BackupError
    from storage.postgres_backup import BackupUnavailable, dump_database

    where = mask_url(config.storage.url)
    try:
        result = dump_database(
            config.storage.url,
            config.server.database,
            now_ms=current_ms(),
            target=args.path,
            pg_dump=config.storage.pg_dump,
        )
    except BackupUnavailable as exc:
        print(f"llm-proxy: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        return fail(f"backup failed: {exc}")
    except BackupError as exc:
        return fail(f"backup of {where} failed: {exc}")
    print(f"backed up {where}: {result.size_bytes:,} bytes", file=sys.stderr)
    print(result.path)  # stdout carries the path alone, for scripts
    return 0
