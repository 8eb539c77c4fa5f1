"""Read queries: plain functions of a connection, run through ``ReadPool.run``."""

from __future__ import annotations

from dataclasses import dataclass

from storage.rollup import HOUR_MS
from storage.sql import Connection, bytewise, column_names

__all__ = ["ClientUsage", "client_usage", "count_requests", "recent_requests", "usage_totals"]

_BOOLEAN_COLUMNS = frozenset({"stream", "has_images"})


def count_requests(conn: Connection) -> int:
    """Number of rows in the request log."""
    (count,) = conn.execute("SELECT count(*) FROM llm_requests").fetchall()[0]
    assert isinstance(count, int)
    return count


def recent_requests(conn: Connection, limit: int = 50) -> list[dict[str, object]]:
    """The newest ``limit`` logged requests, newest first, every column (booleans as bool)."""
    cursor = conn.execute(
        "SELECT * FROM llm_requests ORDER BY ts_ms DESC, id DESC LIMIT ?", (limit,)
    )
    names = column_names(cursor)
    if names is None:
        return []  # no rows
    rows = cursor.fetchall()
    result: list[dict[str, object]] = []
    for row in rows:
        record = dict(zip(names, row, strict=True))
        for name in _BOOLEAN_COLUMNS:
            record[name] = bool(record[name])
        result.append(record)
    return result


def usage_totals(conn: Connection, since_ms: int, until_ms: int) -> dict[str, object]:
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


@dataclass(frozen=True, slots=True)
class ClientUsage:
    """One client's usage over a time range."""

    client_id: str | None
    """None for calls made without a client (anonymous)."""
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    """None when no call in the range was priced."""
    last_call_ms: int | None
    """The client's latest logged call up to the end of the range, whenever it started; None when
    the request log no longer holds one (retention)."""


def client_usage(conn: Connection, since_ms: int, until_ms: int) -> list[ClientUsage]:
    """Usage per client from ``usage_hourly`` over every hour that overlaps ``[since_ms,
    until_ms)``, busiest first."""
    # The buckets counted cover calls up to the end of the hour holding until_ms, so last_call_ms
    # looks that far too: a client with counted calls always has one. Each subquery is one probe of
    # the (client_id, ts_ms) index; anonymous calls are '' in the rollup but NULL in the log.
    until_hour_end = -(-until_ms // HOUR_MS) * HOUR_MS
    rows = conn.execute(
        f"""
        SELECT u.client_id,
               sum(u.requests) AS requests,
               sum(u.errors),
               sum(u.prompt_tokens),
               sum(u.completion_tokens),
               sum(u.cost_usd),
               CASE WHEN u.client_id = ''
                   THEN (SELECT max(r.ts_ms) FROM llm_requests AS r
                         WHERE r.client_id IS NULL AND r.ts_ms < :end)
                   ELSE (SELECT max(r.ts_ms) FROM llm_requests AS r
                         WHERE r.client_id = u.client_id AND r.ts_ms < :end)
               END
        FROM usage_hourly AS u
        WHERE u.hour_ms >= :since AND u.hour_ms < :until
        GROUP BY u.client_id
        ORDER BY requests DESC, {bytewise(conn, "u.client_id")}
        """,
        {"since": since_ms // HOUR_MS * HOUR_MS, "until": until_ms, "end": until_hour_end},
    ).fetchall()
    result: list[ClientUsage] = []
    for client_id, requests, errors, prompt, completion, cost, last_call in rows:
        assert isinstance(client_id, str)
        assert isinstance(requests, int)
        assert isinstance(errors, int)
        assert isinstance(prompt, int)
        assert isinstance(completion, int)
        assert cost is None or isinstance(cost, float)
        assert last_call is None or isinstance(last_call, int)
        result.append(
            ClientUsage(client_id or None, requests, errors, prompt, completion, cost, last_call)
        )
    return result
