"""Read queries: plain functions of a connection, run through ``ReadPool.run``."""

from __future__ import annotations

import apsw

from storage.rollup import HOUR_MS

__all__ = ["count_requests", "recent_requests", "usage_totals"]

_BOOLEAN_COLUMNS = frozenset({"stream", "has_images"})


def count_requests(conn: apsw.Connection) -> int:
    """Number of rows in the request log."""
    (count,) = conn.execute("SELECT count(*) FROM llm_requests").fetchall()[0]
    assert isinstance(count, int)
    return count


def recent_requests(conn: apsw.Connection, limit: int = 50) -> list[dict[str, object]]:
    """The newest ``limit`` logged requests, newest first, every column (booleans as bool)."""
    cursor = conn.execute(
        "SELECT * FROM llm_requests ORDER BY ts_ms DESC, id DESC LIMIT ?", (limit,)
    )
    try:
        # Only available while the statement is live, i.e. before the last row is fetched.
        names = [column[0] for column in cursor.get_description()]
    except apsw.ExecutionCompleteError:
        return []  # no rows
    rows = cursor.fetchall()
    result: list[dict[str, object]] = []
    for row in rows:
        record = dict(zip(names, row, strict=True))
        for name in _BOOLEAN_COLUMNS:
            record[name] = bool(record[name])
        result.append(record)
    return result


def usage_totals(conn: apsw.Connection, since_ms: int, until_ms: int) -> dict[str, object]:
    """Totals from ``usage_hourly`` over every hour that overlaps ``[since_ms, until_ms)``.

    ``cost_usd`` is None when no call in the range was priced; ``avg_latency_ms`` is None when
    there were no calls.
    """
    rows = conn.execute(
        """
        SELECT coalesce(sum(requests), 0),
               coalesce(sum(errors), 0),
               coalesce(sum(prompt_tokens), 0),
               coalesce(sum(completion_tokens), 0),
               coalesce(sum(reasoning_tokens), 0),
               coalesce(sum(cached_tokens), 0),
               sum(cost_usd),
               sum(latency_ms_sum) / nullif(sum(requests), 0)
        FROM usage_hourly
        WHERE hour_ms >= ? AND hour_ms < ?
        """,
        # An hour bucket counts when any part of it lies in the range.
        (since_ms // HOUR_MS * HOUR_MS, until_ms),
    ).fetchall()
    (requests, errors, prompt, completion, reasoning, cached, cost, avg_latency) = rows[0]
    return {
        "requests": requests,
        "errors": errors,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "reasoning_tokens": reasoning,
        "cached_tokens": cached,
        "cost_usd": cost,
        "avg_latency_ms": avg_latency,
    }
