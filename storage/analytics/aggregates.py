"""Usage totals, time series and breakdowns, read from the hourly rollup ``usage_hourly``.

They read only ``usage_hourly``, so they cost the same at a thousand or ten million logged calls,
and still work when request rows are not recorded or have been pruned. The rollup has hourly
resolution: **the range is widened to whole UTC hours**, from the hour holding ``since_ms`` to the
end of the hour holding ``until_ms - 1``. ``Summary`` reports the range it covered. The three
always agree with each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final, Literal

from storage.analytics.latency_percentile import (
    estimate_log_percentile,
    estimate_percentile,
    exact_percentile,
)
from storage.analytics.log_latencies import grouped_log_latencies, log_latencies
from storage.analytics.results import Result
from storage.analytics.usage_filter import NO_FILTER, UsageFilter, check_range
from storage.latency_histogram import LOG_BUCKET_COLUMNS
from storage.rollup import HOUR_MS, LATENCY_BUCKET_COLUMNS
from storage.sql import Connection, bytewise
from storage.values import as_int, as_opt_float

__all__ = [
    "DAY_MS",
    "BreakdownRow",
    "Bucket",
    "Dimension",
    "Summary",
    "TimeseriesPoint",
    "breakdown",
    "summary",
    "timeseries",
]

DAY_MS: Final = 24 * HOUR_MS

Bucket = Literal["hour", "day"]
Dimension = Literal["client", "provider", "model", "endpoint", "instance"]

# Both tables name these columns alike; the rollup stores a missing client, provider or instance
# as ''.
_DIMENSION_COLUMNS: Final[dict[str, str]] = {
    "client": "client_id",
    "provider": "provider",
    "model": "model",
    "endpoint": "endpoint",
    "instance": "instance",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Summary(Result):
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
    """Exact from the request log when the range is small, else estimated from the rollup's
    latency histogram (see ``LatencyPercentiles``); None without data."""
    p95_latency_calls: int
    """How many calls the percentiles rest on: rollup rows the log could not refine to a finer
    histogram are left out, so this can be below ``requests`` (see ``LatencyPercentiles``)."""
    p50_latency_ms: float | None
    """The median, as ``p95_latency_ms``."""
    p95_latency_exact: bool
    """Whether the percentiles were computed from every call of the range (the request log)."""
    cached_token_share: float | None
    """``cached_tokens / prompt_tokens``; None when there were no prompt tokens."""


@dataclasses.dataclass(frozen=True, slots=True)
class TimeseriesPoint(Result):
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
class BreakdownRow(Result):
    """Usage of one client, provider, model, endpoint or instance over a range."""

    key: str | None
    """The client id, provider, model, endpoint or instance; None for calls without a client or
    provider, and for calls whose instance is unknown (logged before schema version 8)."""
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
    p50_latency_ms: float | None
    """As in ``Summary``."""
    share: float
    """Its fraction of the calls matched by the filter in the range, limit or not (0..1)."""


# The latency columns of a group: the fastest and slowest call and the log-spaced histogram
# (schema version 8). The coarse histogram of version 4 (rows the log could not refine) is read
# only for groups without a finer one: every sum costs time on each rollup row of the range.
_LATENCY_SUMS: Final = ", ".join(
    ["min(latency_ms_min)", "max(latency_ms_max)", *(f"sum({c})" for c in LOG_BUCKET_COLUMNS)]
)
_COARSE_SUMS: Final = ", ".join(f"sum({name})" for name in LATENCY_BUCKET_COLUMNS)


@dataclasses.dataclass(frozen=True, slots=True)
class LatencyPercentiles:
    """The p50 and p95 of a group's calls, and what they rest on.

    In order of preference: exact from the request log when it holds every call of the range and
    they are few (``storage.analytics.log_latencies``); estimated from the log-spaced histogram
    of the calls that have one (written since schema version 8, or refined from the log by its
    migration), never outside their fastest and slowest call; or, when the range has only rows
    older than that which the log could not refine, estimated from their coarse histogram.
    """

    p50_ms: float | None
    p95_ms: float | None
    calls: int
    exact: bool

    @classmethod
    def of(
        cls, latency_columns: Sequence[object], log: Sequence[float] | None
    ) -> LatencyPercentiles | None:
        """From a group's ``_LATENCY_SUMS`` values and, when complete, its sorted log latencies;
        None when the group has neither (its coarse histogram is the caller's to read)."""
        if log:
            return cls(exact_percentile(log, 50), exact_percentile(log, 95), len(log), True)
        fastest, slowest = as_opt_float(latency_columns[0]), as_opt_float(latency_columns[1])
        fine = _buckets(latency_columns[2:])
        if not sum(fine):
            return None
        return cls(
            estimate_log_percentile(fine, 50, fastest, slowest),
            estimate_log_percentile(fine, 95, fastest, slowest),
            sum(fine),
            False,
        )

    @classmethod
    def coarse(cls, coarse_columns: Sequence[object] | None) -> LatencyPercentiles:
        """From a group's ``_COARSE_SUMS`` values (None: it has no rows)."""
        counts = _buckets(coarse_columns or [0] * len(LATENCY_BUCKET_COLUMNS))
        return cls(
            estimate_percentile(counts, 50), estimate_percentile(counts, 95), sum(counts), False
        )


def _hour_range(since_ms: int, until_ms: int) -> tuple[int, int]:
    """The whole hours that overlap ``[since_ms, until_ms)``."""
    check_range(since_ms, until_ms)
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
        ("endpoint", flt.endpoint),
        ("instance", flt.instance),
    ):
        if value is not None:
            clauses.append(f"{name} = :{name}")
            params[name] = value
    return " AND ".join(clauses), params


def _buckets(values: Sequence[object]) -> list[int]:
    """Histogram sums (NULL when no row matched) as counts."""
    return [0 if value is None else as_int(value) for value in values]


def summary(
    conn: Connection, since_ms: int, until_ms: int, flt: UsageFilter = NO_FILTER
) -> Summary:
    """Totals over the whole hours overlapping ``[since_ms, until_ms)``, from ``usage_hourly``."""
    where, params = _rollup_where(since_ms, until_ms, flt)
    (row,) = conn.execute(
        f"""
        SELECT coalesce(sum(requests), 0), coalesce(sum(errors), 0),
               coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),
               coalesce(sum(reasoning_tokens), 0), coalesce(sum(cached_tokens), 0),
               sum(cost_usd), sum(latency_ms_sum), {_LATENCY_SUMS}
        FROM usage_hourly WHERE {where}
        """,
        params,
    ).fetchall()
    requests, errors, prompt, completion, reasoning, cached = (as_int(v) for v in row[:6])
    cost, latency_sum = as_opt_float(row[6]), as_opt_float(row[7])
    start, end = as_int(params["start"]), as_int(params["end"])
    latency = LatencyPercentiles.of(row[8:], log_latencies(conn, start, end, flt, requests))
    if latency is None:
        (coarse,) = conn.execute(
            f"SELECT {_COARSE_SUMS} FROM usage_hourly WHERE {where}", params
        ).fetchall()
        latency = LatencyPercentiles.coarse(coarse)
    return Summary(
        since_ms=start,
        until_ms=end,
        requests=requests,
        errors=errors,
        prompt_tokens=prompt,
        completion_tokens=completion,
        reasoning_tokens=reasoning,
        cached_tokens=cached,
        total_tokens=prompt + completion,
        cost_usd=cost,
        avg_latency_ms=None if not requests or latency_sum is None else latency_sum / requests,
        p95_latency_ms=latency.p95_ms,
        p95_latency_calls=latency.calls,
        p50_latency_ms=latency.p50_ms,
        p95_latency_exact=latency.exact,
        cached_token_share=cached / prompt if prompt else None,
    )


def timeseries(
    conn: Connection,
    since_ms: int,
    until_ms: int,
    bucket: Bucket = "hour",
    group_by: Dimension | None = None,
    flt: UsageFilter = NO_FILTER,
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
        GROUP BY t, g ORDER BY t, {"g" if group_by is None else bytewise(conn, group)}
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
        raise ValueError(
            "dimension must be 'client', 'provider', 'model', 'endpoint' or 'instance'"
        ) from None


def breakdown(
    conn: Connection,
    dimension: Dimension,
    since_ms: int,
    until_ms: int,
    flt: UsageFilter = NO_FILTER,
    limit: int = 50,
) -> list[BreakdownRow]:
    """Usage per client, provider, model, endpoint or instance over the whole hours of the range,
    busiest first.

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
               sum(sum(requests)) OVER (), {_LATENCY_SUMS}
        FROM usage_hourly WHERE {where}
        GROUP BY k ORDER BY n DESC, {bytewise(conn, column)} LIMIT :limit
        """,
        params,
    ).fetchall()
    total = as_int(rows[0][7]) if rows else 0
    start, end = as_int(params["start"]), as_int(params["end"])
    logs = grouped_log_latencies(conn, column, start, end, flt, total) or {}
    latencies: list[LatencyPercentiles | None] = []
    for row in rows:
        log = logs.get(str(row[0]))
        complete = log if log and len(log) == as_int(row[1]) else None
        latencies.append(LatencyPercentiles.of(row[8:], complete))
    coarse: dict[str, Sequence[object]] = {}
    if None in latencies:
        del params["limit"]
        coarse = {
            str(key): sums
            for key, *sums in conn.execute(
                f"SELECT {column} AS k, {_COARSE_SUMS} FROM usage_hourly WHERE {where} GROUP BY k",
                params,
            ).fetchall()
        }
    result: list[BreakdownRow] = []
    for row, found in zip(rows, latencies, strict=True):
        key, requests, errors, prompt, completion = row[0], *(as_int(v) for v in row[1:5])
        latency_sum = as_opt_float(row[6]) or 0.0
        latency = found or LatencyPercentiles.coarse(coarse.get(str(key)))
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
                p95_latency_ms=latency.p95_ms,
                p50_latency_ms=latency.p50_ms,
                share=requests / total if total else 0.0,
            )
        )
    return result
