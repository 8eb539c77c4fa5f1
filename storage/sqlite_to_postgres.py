"""Copying a SQLite database whole into a PostgreSQL database (``llm-proxy storage migrate``).

Every table of the schema goes across with every column as stored: ids, timestamps, the hourly
rollups, the audit log, settings, stored responses. The tables come from both catalogues, so a
table or column added by a later migration is copied without a change here, and a schema that
differs between the two sides (a migration written for one backend only) stops the copy before it
starts. The source is read in one read transaction: a consistent snapshot, while a gateway on the
same file goes on writing (WAL). The target is written in one transaction: a failed copy leaves
it as it was. Rows go by ``COPY``, streamed from the SQLite cursor, so memory stays bounded
whatever the size of the request log. The target's triggers are off during the copy: the rows
arrive as they were stored, and a trigger (the API keys' change counter) would count them again.
Blocking throughout: the CLI calls it on its own thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import apsw
import psycopg

from storage.postgres_migrations import advance_identities, migrate, schema_version
from storage.sql import DatabaseError

__all__ = ["CopyReport", "SchemaMismatch", "TargetNotEmpty", "copy_sqlite_to_postgres"]

_POSTGRES_ONLY: Final = frozenset({"schema_version"})
"""PostgreSQL's bookkeeping (SQLite keeps its version in ``pragma user_version``)."""


class SchemaMismatch(DatabaseError):
    """The two databases do not have the same tables and columns: nothing was copied."""


class TargetNotEmpty(DatabaseError):
    """The target already holds rows, and emptying it was not asked for: nothing was copied."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        listed = ", ".join(f"{table} {rows:,}" for table, rows in counts.items())
        super().__init__(f"the target database already holds rows ({listed})")
        self.counts = dict(counts)


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What was copied: rows per table in the order copied, the emptied target's former rows."""

    rows: Mapping[str, int]
    replaced: Mapping[str, int]
    seconds: float


def copy_sqlite_to_postgres(
    source: apsw.Connection,
    target: psycopg.Connection[Any],
    *,
    replace: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy every table of ``source`` (migrated, outside a transaction) into ``target``.

    The target is migrated first, to the source's schema version. A target holding any row
    raises :class:`TargetNotEmpty` unless ``replace``: then its tables are emptied in the same
    transaction as the copy. ``progress(table, rows)`` is called once each table is copied.
    """
    started = time.monotonic()
    if source.in_transaction:
        raise RuntimeError("the source must not be inside a transaction")
    migrate(target)
    source_version = int(source.pragma("user_version"))
    target_version = schema_version(target)
    if source_version != target_version:
        raise SchemaMismatch(
            f"the SQLite database is at schema version {source_version}, the PostgreSQL one at"
            f" {target_version}"
        )
    # One read transaction: every table from the same snapshot, while a gateway writes on.
    source.execute("BEGIN DEFERRED")
    try:
        tables = _tables_in_order(source, target)
        copied: dict[str, int] = {}
        with target.transaction():
            held = {table: _count(target, table) for table in tables}
            held = {table: rows for table, rows in held.items() if rows}
            if held and not replace:
                raise TargetNotEmpty(held)
            if held:
                # One statement for all: TRUNCATE checks the foreign keys between them at once.
                target.execute(f"TRUNCATE {', '.join(map(_quoted, tables))}".encode())
            for table in tables:
                target.execute(f"ALTER TABLE {_quoted(table)} DISABLE TRIGGER USER".encode())
            for table, columns in tables.items():
                copied[table] = _copy_table(source, target, table, columns)
                if progress is not None:
                    progress(table, copied[table])
            for table in tables:
                target.execute(f"ALTER TABLE {_quoted(table)} ENABLE TRIGGER USER".encode())
            advance_identities(target)
    finally:
        source.execute("COMMIT")
    return CopyReport(copied, held, time.monotonic() - started)


def _tables_in_order(
    source: apsw.Connection, target: psycopg.Connection[Any]
) -> dict[str, Sequence[str]]:
    """Every table with its columns (SQLite's order), referenced tables before referencing ones;
    SchemaMismatch when the two catalogues differ."""
    ours = _sqlite_tables(source)
    theirs = _postgres_tables(target)
    problems = [f"table {name} only in SQLite" for name in sorted(ours.keys() - theirs.keys())]
    problems += [f"table {name} only in PostgreSQL" for name in sorted(theirs.keys() - ours.keys())]
    for name in sorted(ours.keys() & theirs.keys()):
        mine, yours = set(ours[name]), set(theirs[name])
        problems += [f"column {name}.{c} only in SQLite" for c in sorted(mine - yours)]
        problems += [f"column {name}.{c} only in PostgreSQL" for c in sorted(yours - mine)]
    if problems:
        raise SchemaMismatch("the schemas differ: " + "; ".join(problems))
    references = {
        name: {str(row[2]) for row in source.execute(f"PRAGMA foreign_key_list({_quoted(name)})")}
        for name in ours
    }
    return {name: ours[name] for name in _dependency_order(references)}


def _dependency_order(references: Mapping[str, set[str]]) -> Iterator[str]:
    """The tables, each after the tables it references (by name within a level, for a stable
    order); a cycle would need deferred constraints, which this schema does not have."""
    done: set[str] = set()
    while len(done) < len(references):
        ready = sorted(
            name
            for name, needs in references.items()
            if name not in done and (needs - {name}) <= done
        )
        if not ready:
            raise SchemaMismatch(
                f"foreign keys form a cycle among {sorted(references.keys() - done)}"
            )
        done.update(ready)
        yield from ready


def _sqlite_tables(conn: apsw.Connection) -> dict[str, list[str]]:
    names = [
        str(row[0])
        for row in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%'"
            " ESCAPE '\\' ORDER BY name"
        )
    ]
    # table_xinfo would list generated columns too; the schema has none, and COPY cannot set one.
    return {
        name: [str(row[1]) for row in conn.execute(f"PRAGMA table_info({_quoted(name)})")]
        for name in names
    }


def _postgres_tables(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    rows = conn.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns AS c"
        " JOIN information_schema.tables AS t"
        " ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
        " ORDER BY c.table_name, c.ordinal_position"
    ).fetchall()
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        if table not in _POSTGRES_ONLY:
            tables.setdefault(str(table), []).append(str(column))
    return tables


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {_quoted(table)}".encode()).fetchone()
    return 0 if row is None else int(row[0])


def _copy_table(
    source: apsw.Connection, target: psycopg.Connection[Any], table: str, columns: Sequence[str]
) -> int:
    """Stream one table's rows from the SQLite cursor into ``COPY``; the number of rows."""
    names = ", ".join(map(_quoted, columns))
    rows = 0
    with (
        target.cursor() as cursor,
        cursor.copy(f"COPY {_quoted(table)} ({names}) FROM STDIN".encode()) as copy,
    ):
        # psycopg sends the rows in chunks as they are written: memory holds a chunk, not the table.
        for row in source.execute(f"SELECT {names} FROM {_quoted(table)}"):
            copy.write_row(row)
            rows += 1
    return rows


def _quoted(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier (the same syntax on both backends)."""
    return '"' + identifier.replace('"', '""') + '"'
