"""The rollup's log-spaced latency histogram (schema version 8): its bucket edges and columns.

Six buckets per decade on the E6 series (1, 1.5, 2.2, 3.3, 4.7, 6.8), from 0.1 ms to 680 s:
neighbouring edges differ by a factor of 1.42 to 1.5, so a percentile interpolated inside its
bucket is within that factor of the exact value, whether calls take 0.4 ms or 4 minutes. The
coarse buckets of version 4 (``storage.rollup.LATENCY_BUCKET_COLUMNS``, first one 0-50 ms) stay
for the rows written before version 8 that the log could not refine.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Final

__all__ = [
    "LOG_BUCKET_COLUMNS",
    "LOG_BUCKET_EDGES_MS",
    "log_bucket",
    "log_bucket_conditions",
    "log_histogram_migration",
]

_MANTISSAS: Final = ("1", "1.5", "2.2", "3.3", "4.7", "6.8")

LOG_BUCKET_EDGES_MS: Final[tuple[float, ...]] = tuple(
    float(f"{mantissa}e{exponent}") for exponent in range(-1, 6) for mantissa in _MANTISSAS
)
"""Upper edges (exclusive) in ms, 0.1 to 680000; bucket 0 holds calls under 0.1 ms, bucket ``i``
those with ``EDGES[i-1] <= latency_ms < EDGES[i]``, the last one 680 s and more. Each edge is the
float nearest its decimal text, so SQL comparing with the same text draws the same lines."""

LOG_BUCKET_COLUMNS: Final[tuple[str, ...]] = tuple(
    f"latency_log_{index:02d}" for index in range(len(LOG_BUCKET_EDGES_MS) + 1)
)
"""The ``usage_hourly`` columns of the buckets, in order (one more than there are edges)."""


def log_bucket(latency_ms: float) -> int:
    """The index of the log-spaced bucket that counts a call of ``latency_ms``."""
    return bisect.bisect_right(LOG_BUCKET_EDGES_MS, latency_ms)


def log_bucket_conditions() -> list[str]:
    """One SQL condition on ``latency_ms`` per bucket, in order (for backfills and checks); the
    edges are written as their shortest decimal text, which both backends read as that float."""
    edges = [repr(edge) for edge in LOG_BUCKET_EDGES_MS]
    conditions = [f"latency_ms < {edges[0]}"]
    conditions += [
        f"latency_ms >= {lo} AND latency_ms < {hi}" for lo, hi in itertools.pairwise(edges)
    ]
    conditions.append(f"latency_ms >= {edges[-1]}")
    return conditions


def log_histogram_migration(count_type: str, real_type: str, count_where: str) -> str:
    """Schema version 8's script for one backend: its column types for a count and a latency,
    and how it counts the log rows meeting a condition (``{}`` stands for the condition)."""
    columns = "".join(
        f"ALTER TABLE usage_hourly ADD COLUMN {column} {count_type} NOT NULL DEFAULT 0;\n"
        for column in LOG_BUCKET_COLUMNS
    )
    counts = ",\n           ".join(
        f"{count_where.format(condition)} AS b{i}"
        for i, condition in enumerate(log_bucket_conditions())
    )
    sets = ",\n    ".join(f"{column} = l.b{i}" for i, column in enumerate(LOG_BUCKET_COLUMNS))
    return f"""{columns}
-- NULL: the row's calls are not all known (rows from before version 8 the log could not refine)
ALTER TABLE usage_hourly ADD COLUMN latency_ms_min {real_type};
ALTER TABLE usage_hourly ADD COLUMN latency_ms_max {real_type};

UPDATE usage_hourly AS u SET
    latency_ms_min = l.lo,
    latency_ms_max = l.hi,
    {sets}
FROM (
    SELECT ts_ms / 3600000 * 3600000 AS hour_ms,
           coalesce(client_id, '') AS client_id,
           coalesce(provider, '') AS provider,
           model,
           count(*) AS calls,
           min(latency_ms) AS lo,
           max(latency_ms) AS hi,
           {counts}
    FROM llm_requests
    GROUP BY 1, 2, 3, 4
) AS l
WHERE u.hour_ms = l.hour_ms
    AND u.client_id = l.client_id
    AND u.provider = l.provider
    AND u.model = l.model
    AND u.requests = l.calls;
"""
