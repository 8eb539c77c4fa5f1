"""Write a batch of request records and their hourly rollup in one transaction (writer thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import apsw
import msgspec

from proxy.records import RequestRecord
from storage.rollup import UPSERT_USAGE_HOURLY, UsageRollup
from storage.sql import DATABASE_ERRORS, Connection, RowRejected, is_postgres
from storage.transaction import in_immediate_transaction

__all__ = [
    "INSERT_REQUEST",
    "REQUEST_COLUMNS",
    "is_row_error",
    "request_row",
    "write_batch",
    "write_rows_one_by_one",
]

REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id",
    "ts_ms",
    "client_id",
    "provider",
    "model",
    "upstream_model",
    "stream",
    "status",
    "http_status",
    "error_type",
    "error_message",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "total_tokens",
    "cost_usd",
    "has_images",
    "latency_ms",
    "ttft_ms",
    "overhead_ms",
    "request_body",
    "response_body",
    "attempts",
    "failed_attempts",
    "endpoint",
    "cache_write_tokens",
    "instance",
)
"""The ``llm_requests`` columns a record fills, in the order of :func:`request_row`."""

_COLUMNS = len(REQUEST_COLUMNS)
INSERT_REQUEST = (
    f"INSERT INTO llm_requests ({', '.join(REQUEST_COLUMNS)}) VALUES ({', '.join('?' * _COLUMNS)})"
)

# The whole batch in one statement: its rows travel as one JSON array that SQLite unpacks itself.
# Binding rows one by one would cost a GIL release and re-acquire per value (APSW lets go of the
# GIL around every SQLite call), each a stall for the event loop thread, which wants it back at
# once: at full load that was ~100 us of the loop's CPU per logged call.
INSERT_REQUESTS_JSON = (
    INSERT_REQUEST.split(" VALUES", 1)[0]
    + " "
    + "SELECT "
    + ", ".join(f"value ->> {i}" for i in range(_COLUMNS))
    + " FROM json_each(?)"
)
_encode_rows = msgspec.json.Encoder().encode

# Errors that say "this row can never be stored", as opposed to "the database is unhappy right
# now" (busy, I/O, disk full), which is worth retrying.
_ROW_ERRORS = (
    apsw.ConstraintError,
    apsw.MismatchError,
    apsw.TooBigError,
    apsw.RangeError,
    RowRejected,
)


def is_row_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a bad record rather than from the database."""
    if isinstance(exc, _ROW_ERRORS):
        return True
    # TypeError, ValueError, OverflowError...: a field that cannot be bound or summed.
    return isinstance(exc, Exception) and not isinstance(exc, DATABASE_ERRORS)


def request_row(record: RequestRecord) -> tuple[object, ...]:
    """The ``INSERT_REQUEST`` parameters of one record."""
    return (
        record.request_id,
        record.ts_ms,
        record.client_id,
        record.provider,
        record.model,
        record.upstream_model,
        int(record.stream),
        record.status,
        record.http_status,
        record.error_type,
        record.error_message,
        record.prompt_tokens,
        record.completion_tokens,
        record.reasoning_tokens,
        record.cached_tokens,
        record.total_tokens,
        record.cost_usd,
        int(record.has_images),
        record.latency_ms,
        record.ttft_ms,
        record.overhead_ms,
        record.request_body,
        record.response_body,
        record.attempts,
        record.failed_attempts,
        record.endpoint,
        record.cache_write_tokens,
        record.instance,
    )


def _insert_all(conn: Connection, records: Sequence[RequestRecord], *, rows: bool = True) -> None:
    """Insert the rows and upsert their rollup (inside the caller's transaction)."""
    rollup = UsageRollup(records)
    if rows and is_postgres(conn):
        # COPY: one stream of rows, the cheapest insert PostgreSQL has.
        copy_rows: Callable[[str, Sequence[str], Iterable[Sequence[object]]], None]
        copy_rows = conn.copy_rows  # type: ignore[attr-defined]
        copy_rows("llm_requests", REQUEST_COLUMNS, (request_row(record) for record in records))
    elif rows:
        # Bound as text: SQLite would read a BLOB as its binary JSONB format.
        text = _encode_rows([request_row(record) for record in records]).decode()
        conn.execute(INSERT_REQUESTS_JSON, (text,))
    conn.executemany(UPSERT_USAGE_HOURLY, rollup.rows())


def write_batch(conn: Connection, records: Sequence[RequestRecord], *, rows: bool = True) -> None:
    """Store ``records`` (only their usage_hourly rollup when not ``rows``) atomically.
    Blocking."""
    in_immediate_transaction(conn, lambda c: _insert_all(c, records, rows=rows))


def _insert_each(
    conn: Connection, records: Sequence[RequestRecord], *, rows: bool = True
) -> list[tuple[RequestRecord, Exception]]:
    """Insert rows under one savepoint each, skipping the ones that cannot be stored."""
    rollup = UsageRollup()
    rejected: list[tuple[RequestRecord, Exception]] = []
    for record in records:
        try:
            with conn:  # a savepoint: undoes this row only
                if rows:
                    conn.execute(INSERT_REQUEST, request_row(record))
                rollup.add(record)
        except Exception as exc:
            if not is_row_error(exc):
                raise
            rejected.append((record, exc))
    conn.executemany(UPSERT_USAGE_HOURLY, rollup.rows())
    return rejected


def write_rows_one_by_one(
    conn: Connection, records: Sequence[RequestRecord], *, rows: bool = True
) -> list[tuple[RequestRecord, Exception]]:
    """Store every storable record in one transaction; return the rejected ones with their error.

    The fallback after a batch failed on a bad row, so one bad record cannot block the rest.
    Blocking.
    """
    return in_immediate_transaction(conn, lambda c: _insert_each(c, records, rows=rows))
