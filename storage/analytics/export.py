"""The request log's export: every call of a range, oldest first, in batches, as CSV or NDJSON.

Reads ``llm_requests`` to the millisecond, one short query per batch, so memory stays bounded and
no read transaction stays open while the client downloads (it would pin the WAL). Text that a
spreadsheet would run as a formula is defused in the CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Final

import msgspec

from proxy.records import Endpoint
from storage.analytics.request_rows import (
    REQUEST_COLUMNS,
    SELECT_ROW,
    RequestRow,
    decode_cursor,
    encode_cursor,
    log_where,
    request_row,
)
from storage.analytics.usage_filter import NO_FILTER, UsageFilter
from storage.sql import Connection

__all__ = ["csv_header", "csv_lines", "export_batches", "export_page", "json_lines"]


def export_page(
    conn: Connection,
    since_ms: int,
    until_ms: int,
    flt: UsageFilter = NO_FILTER,
    batch: int = 1000,
    after: str | None = None,
    endpoint: Endpoint | None = None,
) -> tuple[list[RequestRow], str | None]:
    """One batch of the export, oldest first, starting after the position ``after`` names;
    only calls through ``endpoint`` when it is given.

    Returns the rows and the position to pass as ``after`` next, None after the last batch. One
    short query: the web layer calls it once per batch through ``ReadPool.run``, so no read
    transaction stays open while the client downloads (it would pin the WAL).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    clauses, params = log_where(since_ms, until_ms, flt, None, endpoint)
    if after is not None:
        after_ts, params["after_id"] = decode_cursor(after)
        params["since"] = max(since_ms, after_ts)  # the index range starts at the position
        params["after_ts"] = after_ts
        clauses.append("(ts_ms, id) > (:after_ts, :after_id)")
    params["limit"] = batch
    rows = conn.execute(
        f"SELECT {SELECT_ROW} FROM llm_requests WHERE {' AND '.join(clauses)}"
        " ORDER BY ts_ms, id LIMIT :limit",
        params,
    ).fetchall()
    page = [request_row(row) for row in rows]
    if len(page) < batch:
        return page, None
    return page, encode_cursor(page[-1].ts_ms, page[-1].id)


def export_batches(
    conn: Connection,
    since_ms: int,
    until_ms: int,
    flt: UsageFilter = NO_FILTER,
    batch: int = 1000,
) -> Iterator[list[RequestRow]]:
    """Every logged call in ``[since_ms, until_ms)``, oldest first, in lists of at most ``batch``.

    Each list comes from its own ``export_page`` query, finished before it is yielded, so memory
    stays bounded and no read transaction spans batches. A call logged during the export is
    included only if it sorts after the current position. For a thread-bound connection (a
    script, the CLI); from trio, call ``export_page`` through the read pool instead.
    """
    after: str | None = None
    while True:
        page, after = export_page(conn, since_ms, until_ms, flt, batch, after)
        if page:
            yield page
        if after is None:
            return


# Spreadsheets run a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    """A value as a CSV cell: booleans as true/false, None empty, formula-like text defused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_text(rows: Iterable[Iterable[object]]) -> str:
    """RFC 4180 text: CRLF line ends, fields quoted when they hold a comma, quote or line end."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerows(rows)
    return out.getvalue()


def csv_header() -> str:
    """The CSV header line (``REQUEST_COLUMNS``), CRLF-terminated."""
    return _csv_text([REQUEST_COLUMNS])


def csv_lines(rows: Iterable[RequestRow]) -> str:
    """Request rows as CSV lines, CRLF-terminated, columns in ``REQUEST_COLUMNS`` order.

    Text cells starting with ``= + - @``, a tab or a carriage return get a leading ``'`` so a
    spreadsheet shows them instead of running them; numbers are written as they are.
    """
    return _csv_text([_csv_cell(getattr(row, name)) for name in REQUEST_COLUMNS] for row in rows)


_encode_json = msgspec.json.Encoder().encode


def json_lines(rows: Iterable[RequestRow]) -> str:
    """Request rows as NDJSON: one ``to_json()`` object per line, each ending in ``\\n``."""
    return "".join(_encode_json(row).decode() + "\n" for row in rows)
