"""``llm-proxy storage migrate``: move a SQLite database into PostgreSQL without losing history.

The copy itself is :func:`storage.sqlite_to_postgres.copy_sqlite_to_postgres`; this is its command
line: where from and to, a line per table and the time on stderr, and every failure in one line
(exit 1), the URL never shown with its password.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from proxy.config import Config, mask_url

__all__ = ["add_parser", "run"]

_HELP = """\
Copies every table of the SQLite database (server.database of --config, or --from) into the
PostgreSQL database at --to (default: [storage] url), with every id, timestamp and hourly rollup
as stored, in one transaction: a failed copy leaves the target as it was. The target's schema is
created first. The SQLite database may be in use by a running gateway: the copy is a consistent
snapshot of the moment it starts; calls logged after that moment are not copied, so stop the
gateway first for a final move.

A target that already holds rows is refused; --force empties every llm-proxy table of the target
(TRUNCATE, in the same transaction as the copy) and copies into it.

A password in --to is visible to other users in `ps`: leave it out of the URL and give it in
$PGPASSWORD or ~/.pgpass, or put the URL in the config's [storage] url.

Then set [storage] url to the PostgreSQL URL and restart the gateways.
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``storage`` subcommand and its ``migrate`` action."""
    storage = commands.add_parser(
        "storage", help="move the database between backends", description="Storage backends."
    )
    actions = storage.add_subparsers(dest="storage_command", required=True, metavar="ACTION")
    migrate = actions.add_parser(
        "migrate",
        help="copy a SQLite database whole into PostgreSQL",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument("--config", help="TOML config file (default: $LLM_PROXY_CONFIG)")
    migrate.add_argument(
        "--to", metavar="URL", help="postgresql://user@host:5432/db (default: [storage] url)"
    )
    migrate.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="the SQLite file (default: server.database)",
    )
    migrate.add_argument(
        "--force", action="store_true", help="empty a target that already holds rows, then copy"
    )


def run(args: argparse.Namespace, config: Config) -> int:
    """Copy the SQLite database into PostgreSQL; 0 when done, 1 on any failure."""
    from proxy.config.checks import storage_url

    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr, force=True)
    url = args.to or config.storage.url
    if not url:
        return _failed("no target: give --to postgresql://… or set [storage] url")
    problem = storage_url(url)
    if problem is not None:
        return _failed(f"--to {problem}")
    source = args.source or config.server.database
    if source == ":memory:" or not os.path.isfile(source):
        return _failed(f"no SQLite database at {source} (see --from and --config)")
    return _copy(source, url, force=args.force)


def _copy(source: str, url: str, *, force: bool) -> int:
    import apsw
    import psycopg

    from storage.connection import BusyWaits
    from storage.database import SqliteDatabase
    from storage.migrations import SchemaTooNewError
    from storage.postgres_connection import CONNECT_TIMEOUT_S
    from storage.sql import DatabaseError
    from storage.sqlite_to_postgres import TargetNotEmpty, copy_sqlite_to_postgres

    where = mask_url(url)
    try:
        # Migrated as every command does, so both sides reach the same schema version; the long
        # busy timeout waits out a running gateway's write batches.
        reader = SqliteDatabase(source, busy_timeout_ms=10_000).open_writer(BusyWaits())
    except (apsw.Error, SchemaTooNewError) as exc:
        return _failed(f"cannot open {source}: {exc}")
    try:
        target = psycopg.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="llm-proxy"
        )
    except psycopg.Error as exc:
        reader.close()
        return _failed(f"cannot connect to {where}: {exc}")
    print(f"copying {source} into {where}", file=sys.stderr)
    try:
        assert isinstance(reader, apsw.Connection)
        report = copy_sqlite_to_postgres(
            reader,
            target,
            replace=force,
            progress=lambda table, rows: print(f"  {table}: {rows:,} rows", file=sys.stderr),
        )
    except TargetNotEmpty as exc:
        return _failed(f"{where}: {exc}; nothing copied (--force empties it first)")
    except (apsw.Error, psycopg.Error, DatabaseError, SchemaTooNewError) as exc:
        return _failed(f"copy into {where} failed, nothing copied: {exc}")
    finally:
        target.close()
        reader.close()
    if report.replaced:
        emptied = sum(report.replaced.values())
        print(f"emptied the target first ({emptied:,} rows)", file=sys.stderr)
    total = sum(report.rows.values())
    print(
        f"copied {total:,} rows in {len(report.rows)} tables in {report.seconds:.1f} s; now set"
        " [storage] url to this database and restart the gateways",
        file=sys.stderr,
    )
    return 0


def _failed(message: str) -> int:
    print(f"llm-proxy: {' '.join(message.split())}", file=sys.stderr)
    return 1
