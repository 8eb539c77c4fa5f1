"""Every latency of a small range, read from the request log, for exact percentiles.

When the range holds few calls (``EXACT_PERCENTILE_CALLS`` or fewer by the rollup's count), the
dashboard's percentiles are computed from the calls themselves instead of estimated from the
rollup's histogram. The log may hold fewer calls than the rollup counted (retention pruned it,
or request rows are not recorded): then these return None and the estimate stands.
"""

from __future__ import annotations

from typing import Final

from storage.analytics.request_rows import log_where
from storage.analytics.usage_filter import UsageFilter
from storage.sql import Connection
from storage.values import as_opt_float

__all__ = ["EXACT_PERCENTILE_CALLS", "grouped_log_latencies", "log_latencies"]

EXACT_PERCENTILE_CALLS: Final = 10_000
"""The most calls a range may hold for its percentiles to be exact: reading and sorting this
many latencies costs a few milliseconds on either backend."""


def log_latencies(
    conn: Connection, start_ms: int, end_ms: int, flt: UsageFilter, calls: int
) -> list[float] | None:
    """The latencies of the log's calls in ``[start_ms, end_ms)`` matching ``flt``, ascending;
    None unless the log holds exactly ``calls`` of them (the rollup's count) and that is at most
    ``EXACT_PERCENTILE_CALLS``."""
    if not 0 < calls <= EXACT_PERCENTILE_CALLS:
        return None
    clauses, params = log_where(start_ms, end_ms, flt, None)
    params["limit"] = calls + 1  # one more shows the log and the rollup disagree
    rows = conn.execute(
        f"SELECT latency_ms FROM llm_requests WHERE {' AND '.join(clauses)}"
        " ORDER BY latency_ms LIMIT :limit",
        params,
    ).fetchall()
    if len(rows) != calls:
        return None
    return [as_opt_float(latency) or 0.0 for (latency,) in rows]


def grouped_log_latencies(
    conn: Connection, column: str, start_ms: int, end_ms: int, flt: UsageFilter, calls: int
) -> dict[str, list[float]] | None:
    """As ``log_latencies``, per value of ``column`` (a trusted column name; NULL as ``''``, as
    the rollup keys it), each list ascending; None when ``calls`` (all groups') is out of range.
    A group whose list is shorter than its rollup count is incomplete: the caller compares."""
    if not 0 < calls <= EXACT_PERCENTILE_CALLS:
        return None
    clauses, params = log_where(start_ms, end_ms, flt, None)
    params["limit"] = calls + 1
    rows = conn.execute(
        f"SELECT coalesce({column}, ''), latency_ms FROM llm_requests"
        f" WHERE {' AND '.join(clauses)} ORDER BY latency_ms LIMIT :limit",
        params,
    ).fetchall()
    if len(rows) > calls:
        return None
    groups: dict[str, list[float]] = {}
    for key, latency in rows:
        groups.setdefault(str(key), []).append(as_opt_float(latency) or 0.0)
    return groups
