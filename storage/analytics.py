"""The dashboard's usage analytics: totals, time series, breakdowns, the request log and export.

Plain blocking functions of a read connection, run through ``ReadPool.run`` (``await
reads.run(partial(summary, since_ms=..., until_ms=...))``). Times are integer Unix ms and ranges
are half-open, ``[since_ms, until_ms)``. Bad arguments (an empty or inverted range, an unknown
bucket, dimension or status, a limit out of bounds, a malformed cursor) raise ``ValueError`` with
a message fit for a 400 response.

Two sources, two precisions:

- ``summary``, ``timeseries`` and ``breakdown`` read only ``usage_hourly``, so they cost the same
  at a thousand or ten million logged calls, and still work when request rows are not recorded
  or have been pruned. The rollup has hourly resolution: **the range is widened to whole UTC
  hours**, from the hour holding ``since_ms`` to the end of the hour holding ``until_ms - 1``.
  ``Summary`` reports the range it covered. The three always agree with each other.
- ``request_log``, ``request_detail`` and ``export_page``/``export_batches`` read ``llm_requests``
  and honour the range to the millisecond.

Every result is a frozen dataclass whose ``to_json()`` returns a dict of JSON values (keys are the
field names); ``json_lines`` encodes request rows the same way.
"""

from __future__ import annotations

import base64
import binascii
import csv
import dataclasses
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import apsw
import msgspec

from storage.rollup import HOUR_MS, LATENCY_BUCKET_COLUMNS, LATENCY_BUCKET_EDGES_MS
from storage.values import as_int, as_opt_float

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "DAY_MS",
    "MAX_PAGE",
    "REQUEST_COLUMNS",
    "BreakdownRow",
    "Bucket",
    "Dimension",
    "RequestDetail",
    "RequestRow",
    "StatusFilter",
    "Summary",
    "TimeseriesPoint",
    "UsageFilter",
    "breakdown",
    "csv_header",
    "csv_lines",
    "estimate_percentile",
    "export_batches",
    "export_page",
    "json_lines",
    "request_detail",
    "request_log",
    "summary",
    "timeseries",
]

DAY_MS: Final = 24 * HOUR_MS
MAX_PAGE: Final = 500
"""The largest ``limit`` of a request log page."""

Bucket = Literal["hour", "day"]
Dimension = Literal["client", "provider", "model"]
StatusFilter = Literal["ok", "error", "cancelled"]

# Both tables name these columns alike; the rollup stores a missing client or provider as ''.
_DIMENSION_COLUMNS: Final[dict[str, str]] = {
    "client": "client_id",
    "provider": "provider",
    "model": "model",
}
_STATUSES: Final = frozenset({"ok", "error", "cancelled"})


# --- filters and results --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which calls to count; None matches any value.

    ``client_id=""`` selects calls made without a client (anonymous), ``provider=""`` calls that
    never reached a provider. ``model`` is the model name the client asked for.
    """

    client_id: str | None = None
    provider: str | None = None
    model: str | None = None


_NO_FILTER: Final = UsageFilter()


class _Result:
    """A result record; ``to_json()`` gives its fields as a dict of JSON values."""

    __slots__ = ()

    def to_json(self) -> dict[str, object]:
        """The fields by name; every value is already a JSON value (None, bool, int, float, str)."""
        fields = dataclasses.fields(cast("DataclassInstance", self))
        return {field.name: getattr(self, field.name) for field in fields}


@dataclasses.dataclass(frozen=True, slots=True)
class Summary(_Result):
    """Totals over a range, from the hourly rollup."""

    since_ms: int
    """Start of the range actually covered: ``since_ms`` rounded down to the hour."""
    until_ms: int
    """End of the range actually covered: ``until_ms`` rounded up to the hour."""
    requests: int
    errors: int
    """Calls whose status is not ``ok`` (errors and cancellations)."""
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    total_tokens: int
    """``prompt_tokens + completion_tokens`` (reasoning tokens are part of the completion)."""
    cost_usd: float | None
    """None when no call in the range was priced."""
    avg_latency_ms: float | None
    """None when there were no calls."""
    p95_latency_ms: float | None
    """Estimated from the latency histogram, see ``estimate_percentile``; None without data."""
    p95_latency_calls: int
    """How many calls the p95 rests on: rollup rows from before schema version 4 that could not
    be backfilled have no histogram and are left out, so this can be below ``requests``."""
    cached_token_share: float | None
    """``cached_tokens / prompt_tokens``; None when there were no prompt tokens."""


@dataclasses.dataclass(frozen=True, slots=True)
class TimeseriesPoint(_Result):
    """One time bucket of one group."""

    t_ms: int
    """Start of the bucket: an hour, or a UTC midnight."""
    group: str | None
    """The group's key; None without ``group_by``, and for calls without a client or provider."""
    requests: int
    errors: int
    tokens: int
    """``prompt_tokens + completion_tokens``."""
    cost_usd: float | None
    """None when no call in the bucket was priced."""


@dataclasses.dataclass(frozen=True, slots=True)
class BreakdownRow(_Result):
    """Usage of one client, provider or model over a range."""

    key: str | None
    """The client id, provider or model; None for calls without a client or provider."""
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    """``prompt_tokens + completion_tokens``."""
    cost_usd: float | None
    """None when none of its calls was priced."""
    avg_latency_ms: float
    p95_latency_ms: float | None
    """As in ``Summary``; None when none of its calls has a histogram."""
    share: float
    """Its fraction of the calls matched by the filter in the range, limit or not (0..1)."""


@dataclasses.dataclass(frozen=True, slots=True)
class RequestRow(_Result):
    """One logged call: every ``llm_requests`` column except the bodies."""

    id: int
    """The row id: the key of ``request_detail`` and of the pagination."""
    request_id: str
    ts_ms: int
    client_id: str | None
    provider: str | None
    model: str
    upstream_model: str | None
    stream: bool
    status: str
    http_status: int
    error_type: str | None
    error_message: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    cached_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None
    has_images: bool
    latency_ms: float
    ttft_ms: float | None
    overhead_ms: float
    attempts: int
    failed_attempts: str | None
    """The fallbacks' failures as stored: JSON text (an array), or None."""


@dataclasses.dataclass(frozen=True, slots=True)
class RequestDetail(_Result):
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


REQUEST_COLUMNS: Final = tuple(field.name for field in dataclasses.fields(RequestRow))
"""The request log's columns, in order (also the CSV header)."""
_SELECT_ROW: Final = ", ".join(REQUEST_COLUMNS)
_STREAM = REQUEST_COLUMNS.index("stream")
_HAS_IMAGES = REQUEST_COLUMNS.index("has_images")


def _request_row(values: Sequence[Any]) -> RequestRow:
    """A ``RequestRow`` from the values of ``_SELECT_ROW`` (booleans stored as 0/1)."""
    fields = list(values)
    fields[_STREAM] = bool(fields[_STREAM])
    fields[_HAS_IMAGES] = bool(fields[_HAS_IMAGES])
    return RequestRow(*fields)


# --- p95 from the histogram -----------------------------------------------------------------------


def estimate_percentile(counts: Sequence[int], percent: int = 95) -> float | None:
    """Estimate a latency percentile from histogram bucket counts (``LATENCY_BUCKET_COLUMNS``).

    Finds the bucket holding the call of rank ``percent/100 * N`` and interpolates linearly
    inside it, as if its calls were spread evenly.

    Error bound: the exact percentile (nearest-rank: the ``ceil(percent/100 * N)``-th smallest
    latency) lies in the same bucket as the estimate, so the two differ by less than that
    bucket's width: < 50 ms when the exact value is under 100 ms, < 150 ms under 250 ms, < 250 ms
    under 500 ms, < 500 ms under 1 s, < 1.5 s under 2.5 s, < 2.5 s under 5 s, < 5 s under 10 s,
    < 20 s under 30 s, < 30 s under 60 s. Above 50 ms that is within a factor of 3 of the exact
    value (the 10–30 s bucket; a factor 2 or 2.5 elsewhere). In the open top bucket (60 s and
    more) the estimate is its lower edge, 60000 ms: a lower bound. None when all counts are 0.
    """
    if len(counts) != len(LATENCY_BUCKET_COLUMNS):
        raise ValueError(f"expected {len(LATENCY_BUCKET_COLUMNS)} bucket counts")
    if not 0 < percent <= 100:
        raise ValueError("percent must be in (0, 100]")
    total = sum(counts)
    if total == 0:
        return None
    # Integer arithmetic: rank = percent * total / 100 exactly, no rounding at bucket boundaries.
    rank_x100 = percent * total
    below = 0
    for index, count in enumerate(counts):
        if count and (below + count) * 100 >= rank_x100:
            lower = 0 if index == 0 else LATENCY_BUCKET_EDGES_MS[index - 1]
            if index == len(LATENCY_BUCKET_EDGES_MS):
                return float(lower)
            width = LATENCY_BUCKET_EDGES_MS[index] - lower
            return lower + width * (rank_x100 - below * 100) / (count * 100)
        below += count
    raise AssertionError("unreachable: the last non-empty bucket reaches the rank")


# --- rollup queries -------------------------------------------------------------------------------

_SUM_BUCKETS: Final = ", ".join(f"sum({name})" for name in LATENCY_BUCKET_COLUMNS)


def _check_range(since_ms: int, until_ms: int) -> None:
    """Refuse an empty or inverted range."""
    if since_ms >= until_ms:
        raise ValueError("the range is empty: 'from' must be before 'to'")


def _hour_range(since_ms: int, until_ms: int) -> tuple[int, int]:
    """The whole hours that overlap ``[since_ms, until_ms)``."""
    _check_range(since_ms, until_ms)
    return since_ms // HOUR_MS * HOUR_MS, -(-until_ms // HOUR_MS) * HOUR_MS


def _rollup_where(since_ms: int, until_ms: int, flt: UsageFilter) -> tuple[str, dict[str, object]]:
    """A WHERE clause on ``usage_hourly`` for the hours of the range and the filter."""
    start, end = _hour_range(since_ms, until_ms)
    clauses = ["hour_ms >= :start", "hour_ms < :end"]
    params: dict[str, object] = {"start": start, "end": end}
    # '' is stored as '' in the rollup, so an equality covers the anonymous case too.
    for name, value in (
        ("client_id", flt.client_id),
        ("provider", flt.provider),
        ("model", flt.model),
    ):
        if value is not None:
            clauses.append(f"{name} = :{name}")
            params[name] = value
    return " AND ".join(clauses), params


def _buckets(values: Sequence[object]) -> list[int]:
    """Histogram sums (NULL when no row matched) as counts."""
    return [0 if value is None else as_int(value) for value in values]


def summary(
    conn: apsw.Connection, since_ms: int, until_ms: int, flt: UsageFilter = _NO_FILTER
) -> Summary:
    """Totals over the whole hours overlapping ``[since_ms, until_ms)``, from ``usage_hourly``."""
    where, params = _rollup_where(since_ms, until_ms, flt)
    (row,) = conn.execute(
        f"""
        SELECT coalesce(sum(requests), 0), coalesce(sum(errors), 0),
               coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),
               coalesce(sum(reasoning_tokens), 0), coalesce(sum(cached_tokens), 0),
               sum(cost_usd), sum(latency_ms_sum), {_SUM_BUCKETS}
        FROM usage_hourly WHERE {where}
        """,
        params,
    ).fetchall()
    requests, errors, prompt, completion, reasoning, cached = (as_int(v) for v in row[:6])
    cost, latency_sum = as_opt_float(row[6]), as_opt_float(row[7])
    buckets = _buckets(row[8:])
    return Summary(
        since_ms=as_int(params["start"]),
        until_ms=as_int(params["end"]),
        requests=requests,
        errors=errors,
        prompt_tokens=prompt,
        completion_tokens=completion,
        reasoning_tokens=reasoning,
        cached_tokens=cached,
        total_tokens=prompt + completion,
        cost_usd=cost,
        avg_latency_ms=None if not requests or latency_sum is None else latency_sum / requests,
        p95_latency_ms=estimate_percentile(buckets),
        p95_latency_calls=sum(buckets),
        cached_token_share=cached / prompt if prompt else None,
    )


def timeseries(
    conn: apsw.Connection,
    since_ms: int,
    until_ms: int,
    bucket: Bucket = "hour",
    group_by: Dimension | None = None,
    flt: UsageFilter = _NO_FILTER,
) -> list[TimeseriesPoint]:
    """Requests, errors, tokens and cost per hour or UTC day (and per group), oldest first.

    Only buckets with calls are returned: the UI fills the gaps. Points are ordered by time, then
    by group key (anonymous first). With ``bucket="day"`` the first and last days cover only the
    hours of the range.
    """
    if bucket not in ("hour", "day"):
        raise ValueError("bucket must be 'hour' or 'day'")
    width = HOUR_MS if bucket == "hour" else DAY_MS
    group = "NULL" if group_by is None else _dimension_column(group_by)
    where, params = _rollup_where(since_ms, until_ms, flt)
    params["width"] = width
    rows = conn.execute(
        f"""
        SELECT hour_ms / :width * :width AS t, {group} AS g, sum(requests), sum(errors),
               sum(prompt_tokens) + sum(completion_tokens), sum(cost_usd)
        FROM usage_hourly WHERE {where}
        GROUP BY t, g ORDER BY t, g
        """,
        params,
    ).fetchall()
    return [
        TimeseriesPoint(
            t_ms=as_int(t),
            group=None if g is None or g == "" else str(g),
            requests=as_int(requests),
            errors=as_int(errors),
            tokens=as_int(tokens),
            cost_usd=as_opt_float(cost),
        )
        for t, g, requests, errors, tokens, cost in rows
    ]


def _dimension_column(dimension: str) -> str:
    """The column of a breakdown or grouping dimension; never user text in the SQL."""
    try:
        return _DIMENSION_COLUMNS[dimension]
    except KeyError:
        raise ValueError("dimension must be 'client', 'provider' or 'model'") from None


def breakdown(
    conn: apsw.Connection,
    dimension: Dimension,
    since_ms: int,
    until_ms: int,
    flt: UsageFilter = _NO_FILTER,
    limit: int = 50,
) -> list[BreakdownRow]:
    """Usage per client, provider or model over the whole hours of the range, busiest first.

    At most ``limit`` rows, ordered by requests (descending), then key; ``share`` is relative to
    every call the filter matches, including those of keys beyond the limit.
    """
    column = _dimension_column(dimension)
    if limit < 1:
        raise ValueError("limit must be at least 1")
    where, params = _rollup_where(since_ms, until_ms, flt)
    params["limit"] = limit
    rows = conn.execute(
        f"""
        SELECT {column} AS k, sum(requests) AS n, sum(errors), sum(prompt_tokens),
               sum(completion_tokens), sum(cost_usd), sum(latency_ms_sum),
               sum(sum(requests)) OVER (), {_SUM_BUCKETS}
        FROM usage_hourly WHERE {where}
        GROUP BY k ORDER BY n DESC, k LIMIT :limit
        """,
        params,
    ).fetchall()
    result: list[BreakdownRow] = []
    for row in rows:
        key, requests, errors, prompt, completion = row[0], *(as_int(v) for v in row[1:5])
        latency_sum, total = as_opt_float(row[6]) or 0.0, as_int(row[7])
        buckets = _buckets(row[8:])
        result.append(
            BreakdownRow(
                key=None if key is None or key == "" else str(key),
                requests=requests,
                errors=errors,
                prompt_tokens=prompt,
                completion_tokens=completion,
                tokens=prompt + completion,
                cost_usd=as_opt_float(row[5]),
                avg_latency_ms=latency_sum / requests if requests else 0.0,
                p95_latency_ms=estimate_percentile(buckets),
                share=requests / total if total else 0.0,
            )
        )
    return result


# --- the request log ------------------------------------------------------------------------------

_CURSOR_TEXT = re.compile(r"(-?[0-9]{1,19}):([0-9]{1,19})")
_CURSOR_CHARS = re.compile(r"[A-Za-z0-9_-]{1,80}")


def _encode_cursor(ts_ms: int, row_id: int) -> str:
    """An opaque cursor naming the position just past row ``(ts_ms, row_id)``."""
    return base64.urlsafe_b64encode(f"{ts_ms}:{row_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int]:
    """The ``(ts_ms, id)`` a cursor names; ``ValueError`` when it is not one of ours."""
    error = ValueError("malformed cursor: pass back a 'next_cursor' value unchanged")
    if not _CURSOR_CHARS.fullmatch(cursor):
        raise error
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise error from None
    match = _CURSOR_TEXT.fullmatch(text)
    if match is None:
        raise error
    ts_ms, row_id = int(match[1]), int(match[2])
    if not (abs(ts_ms) < 2**62 and row_id < 2**63):
        raise error
    return ts_ms, row_id


def _log_where(
    since_ms: int, until_ms: int, flt: UsageFilter, status: str | None
) -> tuple[list[str], dict[str, object]]:
    """WHERE clauses on ``llm_requests`` for the exact range, the filter and the status."""
    _check_range(since_ms, until_ms)
    clauses = ["ts_ms >= :since", "ts_ms < :until"]
    params: dict[str, object] = {"since": since_ms, "until": until_ms}
    # Each equality lets SQLite use that column's (column, ts_ms) index; the log stores a missing
    # client or provider as NULL where the rollup and the filter say ''.
    for name, value in (
        ("client_id", flt.client_id),
        ("provider", flt.provider),
        ("model", flt.model),
    ):
        if value == "" and name != "model":
            clauses.append(f"{name} IS NULL")
        elif value is not None:
            clauses.append(f"{name} = :{name}")
            params[name] = value
    if status is not None:
        if status not in _STATUSES:
            raise ValueError("status must be 'ok', 'error' or 'cancelled'")
        clauses.append("status = :status")
        params["status"] = status
    return clauses, params


def request_log(
    conn: apsw.Connection,
    since_ms: int,
    until_ms: int,
    flt: UsageFilter = _NO_FILTER,
    status: StatusFilter | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[RequestRow], str | None]:
    """One page of logged calls in ``[since_ms, until_ms)``, newest first, and the next cursor.

    Keyset pagination on ``(ts_ms, id)``: pass ``next_cursor`` back to get the following page; it
    is None on the last page. Calls logged meanwhile never shift or repeat rows across pages.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    clauses, params = _log_where(since_ms, until_ms, flt, status)
    if cursor is not None:
        after_ts, params["after_id"] = _decode_cursor(cursor)
        # The cursor's ts also bounds the index range; the row value alone would leave SQLite
        # walking down from until_ms to it.
        params["until"] = min(until_ms, after_ts + 1)
        params["after_ts"] = after_ts
        clauses.append("(ts_ms, id) < (:after_ts, :after_id)")
    params["limit"] = limit + 1  # one more tells whether a next page exists
    rows = conn.execute(
        f"SELECT {_SELECT_ROW} FROM llm_requests WHERE {' AND '.join(clauses)}"
        " ORDER BY ts_ms DESC, id DESC LIMIT :limit",
        params,
    ).fetchall()
    page = [_request_row(row) for row in rows[:limit]]
    if len(rows) <= limit:
        return page, None
    last = page[-1]
    return page, _encode_cursor(last.ts_ms, last.id)


def request_detail(conn: apsw.Connection, row_id: int) -> RequestDetail | None:
    """One logged call by its row ``id`` (``RequestRow.id``), with its bodies; None if absent.

    By row id rather than ``request_id``: that column has no index and need not be unique.
    """
    rows = conn.execute(
        f"SELECT {_SELECT_ROW}, request_body, response_body FROM llm_requests WHERE id = ?",
        (row_id,),
    ).fetchall()
    if not rows:
        return None
    row = rows[0]
    request = _request_row(row[: len(REQUEST_COLUMNS)])
    request_body, response_body = row[len(REQUEST_COLUMNS) :]
    failed = None if request.failed_attempts is None else json.loads(request.failed_attempts)
    return RequestDetail(
        request=request,
        request_body=None if request_body is None else str(request_body),
        response_body=None if response_body is None else str(response_body),
        failed_attempts=failed,
    )


# --- export ---------------------------------------------------------------------------------------


def export_page(
    conn: apsw.Connection,
    since_ms: int,
    until_ms: int,
    flt: UsageFilter = _NO_FILTER,
    batch: int = 1000,
    after: str | None = None,
) -> tuple[list[RequestRow], str | None]:
    """One batch of the export, oldest first, starting after the position ``after`` names.

    Returns the rows and the position to pass as ``after`` next, None after the last batch. One
    short query: the web layer calls it once per batch through ``ReadPool.run``, so no read
    transaction stays open while the client downloads (it would pin the WAL).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    clauses, params = _log_where(since_ms, until_ms, flt, None)
    if after is not None:
        after_ts, params["after_id"] = _decode_cursor(after)
        params["since"] = max(since_ms, after_ts)  # the index range starts at the position
        params["after_ts"] = after_ts
        clauses.append("(ts_ms, id) > (:after_ts, :after_id)")
    params["limit"] = batch
    rows = conn.execute(
        f"SELECT {_SELECT_ROW} FROM llm_requests WHERE {' AND '.join(clauses)}"
        " ORDER BY ts_ms, id LIMIT :limit",
        params,
    ).fetchall()
    page = [_request_row(row) for row in rows]
    if len(page) < batch:
        return page, None
    return page, _encode_cursor(page[-1].ts_ms, page[-1].id)


def export_batches(
    conn: apsw.Connection,
    since_ms: int,
    until_ms: int,
    flt: UsageFilter = _NO_FILTER,
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
