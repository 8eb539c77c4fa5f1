"""Schema version 8's script, written once for both backends: the instance of every logged call,
and ``usage_hourly`` rebuilt keyed by endpoint and instance too, with its log-spaced latency
histogram (``storage.latency_histogram``) and each row's fastest and slowest call.

The rollup's key grows, which neither backend can do in place to a primary key as SQLite builds
it, so the table is rebuilt (``usage_hourly_v8``, then renamed) with the columns the dashboard
sums first and version 4's coarse histogram last. Rows whose calls the request log still holds
every one of (same hour, client, provider and model, the same count) are rebuilt from the log:
split by endpoint, with their log-spaced histogram and bounds (and the coarse one, as version 4
counted it). The others (retention pruned their calls, or
request rows were not recorded) keep their totals as endpoint ``'chat'`` (the only endpoint
before version 5) and instance ``''`` (unknown), their coarse histogram and NULL bounds.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from storage.latency_histogram import LOG_BUCKET_COLUMNS, log_bucket_conditions
from storage.rollup import LATENCY_BUCKET_COLUMNS, LATENCY_BUCKET_EDGES_MS

__all__ = ["Dialect", "rollup_migration"]


@dataclasses.dataclass(frozen=True, slots=True)
class Dialect:
    """One backend's spelling of what the script needs."""

    integer: str
    text: str
    real: str
    count_where: str
    """How it counts the rows meeting a condition; ``{}`` stands for the condition."""
    table_suffix: str
    """What ends a CREATE TABLE (SQLite's STRICT, WITHOUT ROWID)."""
    after_rename: str
    """Statements after the rename (PostgreSQL's primary-key index keeps its build name)."""


_KEY: Final = ("hour_ms", "client_id", "provider", "model", "endpoint", "instance")
_SUMS: Final = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cost_usd",
    "latency_ms_sum",
)


def _create(d: Dialect) -> str:
    """The rebuilt table: key, the sums every query reads, bounds, histograms."""
    i, t, r = d.integer, d.text, d.real
    lines = [
        f"hour_ms {i} NOT NULL CHECK (hour_ms % 3600000 = 0)",
        f"client_id {t} NOT NULL DEFAULT ''",
        f"provider {t} NOT NULL DEFAULT ''",
        f"model {t} NOT NULL",
        f"endpoint {t} NOT NULL DEFAULT 'chat'",
        f"instance {t} NOT NULL DEFAULT ''",
        *(f"{name} {i} NOT NULL DEFAULT 0" for name in _SUMS[:6]),
        "-- NULL: no call in the bucket was priced",
        f"cost_usd {r}",
        f"latency_ms_sum {r} NOT NULL DEFAULT 0",
        "-- NULL: the row's calls are not all known (rows from before version 8 the log lacked)",
        f"latency_ms_min {r}",
        f"latency_ms_max {r}",
        *(f"{name} {i} NOT NULL DEFAULT 0" for name in LOG_BUCKET_COLUMNS),
        *(f"{name} {i} NOT NULL DEFAULT 0" for name in LATENCY_BUCKET_COLUMNS),
        f"PRIMARY KEY ({', '.join(_KEY)})",
    ]
    body = ",\n    ".join(line for line in lines if not line.startswith("--"))
    return f"CREATE TABLE usage_hourly_v8 (\n    {body}\n){d.table_suffix};\n"


def rollup_migration(d: Dialect) -> str:
    """Version 8 for the backend ``d`` describes."""
    hour = "ts_ms / 3600000 * 3600000"
    same_row = " AND ".join(f"u.{c} = l.{c}" for c in _KEY[:4])
    kept = [*_KEY[:4], *_SUMS, *LATENCY_BUCKET_COLUMNS]
    conditions = [
        *zip(log_bucket_conditions(), LOG_BUCKET_COLUMNS, strict=True),
        *zip(
            log_bucket_conditions(tuple(map(float, LATENCY_BUCKET_EDGES_MS))),
            LATENCY_BUCKET_COLUMNS,
            strict=True,
        ),
    ]
    buckets = ",\n               ".join(
        f"{d.count_where.format(condition)} AS {column}" for condition, column in conditions
    )
    rebuilt = [
        *_KEY,
        *_SUMS,
        "latency_ms_min",
        "latency_ms_max",
        *LOG_BUCKET_COLUMNS,
        *LATENCY_BUCKET_COLUMNS,
    ]
    return f"""
ALTER TABLE llm_requests ADD COLUMN instance {d.text};

{_create(d)}
-- The rows the log does not hold every call of: as they were, endpoint 'chat', instance ''.
WITH l AS (
    SELECT {hour} AS hour_ms, coalesce(client_id, '') AS client_id,
           coalesce(provider, '') AS provider, model, count(*) AS calls
    FROM llm_requests GROUP BY 1, 2, 3, 4
)
INSERT INTO usage_hourly_v8 ({", ".join(kept)})
SELECT {", ".join(f"u.{c}" for c in kept)}
FROM usage_hourly AS u LEFT JOIN l ON {same_row}
WHERE l.calls IS NULL OR l.calls <> u.requests;

-- The others, from their calls: one row per endpoint, with both histograms and the bounds.
WITH g AS (
    SELECT {hour} AS hour_ms, coalesce(client_id, '') AS client_id,
           coalesce(provider, '') AS provider, model, endpoint,
           coalesce(instance, '') AS instance,
           count(*) AS requests,
           {d.count_where.format("status <> 'ok'")} AS errors,
           coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
           coalesce(sum(completion_tokens), 0) AS completion_tokens,
           coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
           coalesce(sum(cached_tokens), 0) AS cached_tokens,
           sum(cost_usd) AS cost_usd,
           coalesce(sum(latency_ms), 0) AS latency_ms_sum,
           min(latency_ms) AS latency_ms_min,
           max(latency_ms) AS latency_ms_max,
           {buckets}
    FROM llm_requests GROUP BY 1, 2, 3, 4, 5, 6
),
l AS (
    SELECT g.*, sum(requests) OVER (PARTITION BY hour_ms, client_id, provider, model) AS calls
    FROM g
)
INSERT INTO usage_hourly_v8 ({", ".join(rebuilt)})
SELECT {", ".join(f"l.{c}" for c in rebuilt)}
FROM l JOIN usage_hourly AS u ON {same_row} AND u.requests = l.calls;

DROP TABLE usage_hourly;
ALTER TABLE usage_hourly_v8 RENAME TO usage_hourly;
{d.after_rename}"""
