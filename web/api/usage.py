"""``/api/usage``: totals, time series, breakdowns, the request log and its export (design §8).

Aggregates come from ``usage_hourly`` (fast at millions of calls, whole-hour resolution); the
request log and the export read ``llm_requests`` to the millisecond (see ``storage.analytics``).
Times are given as Unix milliseconds or ISO 8601 (``2026-11-27T10:00:00Z``); the range defaults to
the last 24 hours.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial
from typing import Final, TypeVar

from quart import Blueprint, Response, request

from proxy.errors import InvalidRequest, NotFound
from proxy.records import ENDPOINTS, Endpoint
from storage.analytics.aggregates import (
    BreakdownRow,
    Bucket,
    Dimension,
    TimeseriesPoint,
    breakdown,
    summary,
    timeseries,
)
from storage.analytics.export import csv_header, csv_lines, export_page, json_lines
from storage.analytics.request_log import MAX_PAGE, RequestDetail, request_detail, request_log
from storage.analytics.request_rows import RequestRow, StatusFilter
from storage.analytics.usage_filter import UsageFilter
from storage.client_names import client_names
from storage.reads import ReadPool
from storage.sql import Connection
from web.api.common import deps_of, json_response, query_range

usage = Blueprint("api_usage", __name__, url_prefix="/api")


@dataclasses.dataclass(frozen=True, slots=True)
class UsageApi:
    """What ``/api/usage`` uses: the read pool, nothing else."""

    reads: ReadPool


def _reads() -> ReadPool:
    return deps_of(UsageApi).reads


T = TypeVar("T")
EXPORT_BATCH: Final = 1000
MAX_ROW_ID: Final = 2**63 - 1  # SQLite's rowids are signed 64-bit integers
_BUCKETS: Final[Mapping[str, Bucket]] = {"hour": "hour", "day": "day"}
_GROUPS: Final[Mapping[str, Dimension]] = {
    "provider": "provider",
    "model": "model",
    "client": "client",
    "endpoint": "endpoint",
    "instance": "instance",
}
_STATUSES: Final[Mapping[str, StatusFilter]] = {
    "ok": "ok",
    "error": "error",
    "cancelled": "cancelled",
}
_ENDPOINTS: Final[Mapping[str, Endpoint]] = {name: name for name in ENDPOINTS}
_DIMENSIONS: Final[Mapping[str, Dimension]] = {
    "clients": "client",
    "providers": "provider",
    "models": "model",
    "endpoints": "endpoint",
    "instances": "instance",
}
_FORMATS: Final = {"csv": "csv", "json": "json"}


def _filter() -> UsageFilter:
    """The calls a route counts: every route takes the same filter (the hourly totals are kept
    by endpoint and instance too since schema version 8)."""
    return UsageFilter(
        client_id=request.args.get("client") or None,
        provider=request.args.get("provider") or None,
        model=request.args.get("model") or None,
        endpoint=_choice("endpoint", _ENDPOINTS),
        instance=request.args.get("instance") or None,
    )


def _choice(name: str, allowed: Mapping[str, T]) -> T | None:
    """The query parameter ``name`` as one of ``allowed``'s values; None when absent."""
    value = request.args.get(name)
    if not value:
        return None
    try:
        return allowed[value]
    except KeyError:
        raise InvalidRequest(
            f"'{name}' must be one of {', '.join(allowed)}; got {value!r}."
        ) from None


def _limit() -> int:
    text = request.args.get("limit", "50")
    # isdigit() alone admits "²", which int() refuses, and "٣", which is no page size.
    digits = text.isascii() and text.isdigit() and len(text) <= len(str(MAX_PAGE))
    if not digits or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_PAGE}.")
    return int(text)


async def _read(fn: Callable[..., T]) -> T:
    """Run a storage query; its ValueError (a bad argument) is the caller's 400."""
    try:
        return await _reads().run(fn)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


# Names are read with the rows they name, in the same read: a page shows one moment's names.
# Calls keep their client's id, so a renamed client's calls show its new name, and a deleted
# client's calls have none (the dashboard shows the id).


def _named_series(
    conn: Connection,
    *,
    since_ms: int,
    until_ms: int,
    bucket: Bucket,
    group_by: Dimension | None,
    flt: UsageFilter,
) -> tuple[list[TimeseriesPoint], dict[str, str] | None]:
    points = timeseries(conn, since_ms, until_ms, bucket, group_by, flt)
    if group_by != "client":
        return points, None
    return points, client_names(conn, (point.group for point in points))


def _named_breakdown(
    conn: Connection,
    *,
    dimension: Dimension,
    since_ms: int,
    until_ms: int,
    flt: UsageFilter,
    limit: int,
) -> tuple[list[BreakdownRow], dict[str, str] | None]:
    rows = breakdown(conn, dimension, since_ms, until_ms, flt, limit)
    if dimension != "client":
        return rows, None
    return rows, client_names(conn, (row.key for row in rows))


def _named_log(
    conn: Connection,
    *,
    since_ms: int,
    until_ms: int,
    flt: UsageFilter,
    status: StatusFilter | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[RequestRow], str | None, dict[str, str]]:
    rows, next_cursor = request_log(
        conn, since_ms, until_ms, flt, status=status, limit=limit, cursor=cursor
    )
    return rows, next_cursor, client_names(conn, (row.client_id for row in rows))


def _named_detail(conn: Connection, row_id: int) -> tuple[RequestDetail | None, str | None]:
    detail = request_detail(conn, row_id)
    if detail is None:
        return None, None
    return detail, client_names(conn, [detail.request.client_id]).get(
        detail.request.client_id or ""
    )


@usage.get("/usage/summary")
async def usage_summary() -> Response:
    since, until = query_range()
    result = await _read(partial(summary, since_ms=since, until_ms=until, flt=_filter()))
    return json_response(result.to_json())


@usage.get("/usage/timeseries")
async def usage_timeseries() -> Response:
    since, until = query_range()
    bucket = _choice("bucket", _BUCKETS) or "hour"
    group_by = _choice("group_by", _GROUPS)
    points, names = await _read(
        partial(
            _named_series,
            since_ms=since,
            until_ms=until,
            bucket=bucket,
            group_by=group_by,
            flt=_filter(),
        )
    )
    body: dict[str, object] = {
        "from": since,
        "to": until,
        "bucket": bucket,
        "group_by": group_by,
        "data": [point.to_json() for point in points],
    }
    if names is not None:
        body["names"] = names  # client id -> name, for the clients that have one
    return json_response(body)


@usage.get("/usage/<any(clients, providers, models, endpoints, instances):dimension>")
async def usage_breakdown(dimension: str) -> Response:
    since, until = query_range()
    rows, names = await _read(
        partial(
            _named_breakdown,
            dimension=_DIMENSIONS[dimension],
            since_ms=since,
            until_ms=until,
            flt=_filter(),
            limit=_limit(),
        )
    )
    data = [row.to_json() for row in rows]
    if names is not None:
        data = [{**row, "name": names.get(str(row["key"]))} for row in data]
    return json_response({"from": since, "to": until, "data": data})


@usage.get("/usage/requests")
async def usage_requests() -> Response:
    since, until = query_range()
    status = _choice("status", _STATUSES)
    rows, next_cursor, names = await _read(
        partial(
            _named_log,
            since_ms=since,
            until_ms=until,
            flt=_filter(),
            status=status,
            limit=_limit(),
            cursor=request.args.get("cursor") or None,
        )
    )
    data = [{**row.to_json(), "client_name": names.get(row.client_id or "")} for row in rows]
    return json_response({"data": data, "next_cursor": next_cursor})


@usage.get("/usage/requests/<int:row_id>")
async def usage_request(row_id: int) -> Response:
    # The route takes any run of digits; SQLite cannot even bind one past 64 bits.
    detail, name = (
        (None, None) if row_id > MAX_ROW_ID else await _read(partial(_named_detail, row_id=row_id))
    )
    if detail is None:
        raise NotFound(f"No logged call with id {row_id}.", code="request_not_found")
    return json_response({**detail.to_json(), "client_name": name})


@usage.get("/usage/export")
async def usage_export() -> Response:
    since, until = query_range()
    kind = _choice("format", _FORMATS) or "csv"
    flt = _filter()
    reads = _reads()

    async def chunks() -> AsyncIterator[bytes]:
        # Page by page, each its own short query: memory stays bounded however long the range,
        # and no read transaction stays open while a slow client downloads.
        if kind == "csv":
            yield csv_header().encode()
        after: str | None = None
        while True:
            page, after = await reads.run(
                partial(
                    export_page,
                    since_ms=since,
                    until_ms=until,
                    flt=flt,
                    batch=EXPORT_BATCH,
                    after=after,
                )
            )
            if page:
                yield (csv_lines(page) if kind == "csv" else json_lines(page)).encode()
            if after is None:
                return

    content_type = "text/csv; charset=utf-8" if kind == "csv" else "application/x-ndjson"
    stamp = dt.datetime.fromtimestamp(since / 1000, dt.UTC).strftime("%Y%m%d")
    response = Response(chunks(), content_type=content_type)
    response.headers["content-disposition"] = (
        f'attachment; filename="llm-proxy-requests-{stamp}.{"csv" if kind == "csv" else "ndjson"}"'
    )
    response.headers["cache-control"] = "no-store"
    response.timeout = None  # a long export must not be cut by Quart's response timeout
    return response
