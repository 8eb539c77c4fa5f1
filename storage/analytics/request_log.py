"""The dashboard's request log: pages of logged calls, newest first, and one call with its bodies.

Reads ``llm_requests`` and honours the range to the millisecond. Pages are keyset-paginated on
``(ts_ms, id)`` (``request_rows``), so calls logged while a user pages never shift or repeat rows.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Final

from proxy.records import Endpoint
from storage.analytics.request_rows import (
    REQUEST_COLUMNS,
    SELECT_ROW,
    RequestRow,
    StatusFilter,
    decode_cursor,
    encode_cursor,
    log_where,
    request_row,
)
from storage.analytics.results import Result
from storage.analytics.usage_filter import NO_FILTER, UsageFilter
from storage.sql import Connection

__all__ = ["MAX_PAGE", "RequestDetail", "request_detail", "request_log"]

MAX_PAGE: Final = 500
"""The largest ``limit`` of a request log page."""


@dataclasses.dataclass(frozen=True, slots=True)
class RequestDetail(Result):
    """One logged call with its bodies; ``to_json()`` flattens ``request`` into the top level."""

    request: RequestRow
    request_body: str | None
    response_body: str | None
    failed_attempts: list[Any] | None
    """Parsed: a list of ``{provider, model, status, error}`` objects, or None."""

    def to_json(self) -> dict[str, object]:
        """The row's fields, the bodies, and ``failed_attempts`` parsed instead of as text."""
        return {
            **self.request.to_json(),
            "request_body": self.request_body,
            "response_body": self.response_body,
            "failed_attempts": self.failed_attempts,
        }


def request_log(
    conn: Connection,
    since_ms: int,
    until_ms: int,
    flt: UsageFilter = NO_FILTER,
    status: StatusFilter | None = None,
    limit: int = 50,
    cursor: str | None = None,
    endpoint: Endpoint | None = None,
) -> tuple[list[RequestRow], str | None]:
    """One page of logged calls in ``[since_ms, until_ms)``, newest first, and the next cursor.

    ``status`` and ``endpoint`` (None: any) narrow it further.

    Keyset pagination on ``(ts_ms, id)``: pass ``next_cursor`` back to get the following page; it
    is None on the last page. Calls logged meanwhile never shift or repeat rows across pages.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    clauses, params = log_where(since_ms, until_ms, flt, status, endpoint)
    if cursor is not None:
        after_ts, params["after_id"] = decode_cursor(cursor)
        # The cursor's ts also bounds the index range; the row value alone would leave SQLite
        # walking down from until_ms to it.
        params["until"] = min(until_ms, after_ts + 1)
        params["after_ts"] = after_ts
        clauses.append("(ts_ms, id) < (:after_ts, :after_id)")
    params["limit"] = limit + 1  # one more tells whether a next page exists
    rows = conn.execute(
        f"SELECT {SELECT_ROW} FROM llm_requests WHERE {' AND '.join(clauses)}"
        " ORDER BY ts_ms DESC, id DESC LIMIT :limit",
        params,
    ).fetchall()
    page = [request_row(row) for row in rows[:limit]]
    if len(rows) <= limit:
        return page, None
    last = page[-1]
    return page, encode_cursor(last.ts_ms, last.id)


def request_detail(conn: Connection, row_id: int) -> RequestDetail | None:
    """One logged call by its row ``id`` (``RequestRow.id``), with its bodies; None if absent.

    By row id rather than ``request_id``: that column has no index and need not be unique.
    """
    rows = conn.execute(
        f"SELECT {SELECT_ROW}, request_body, response_body FROM llm_requests WHERE id = ?",
        (row_id,),
    ).fetchall()
    if not rows:
        return None
    row = rows[0]
    request = request_row(row[: len(REQUEST_COLUMNS)])
    request_body, response_body = row[len(REQUEST_COLUMNS) :]
    failed = None if request.failed_attempts is None else json.loads(request.failed_attempts)
    return RequestDetail(
        request=request,
        request_body=None if request_body is None else str(request_body),
        response_body=None if response_body is None else str(response_body),
        failed_attempts=failed,
    )
