"""The rollup's log-spaced latency histogram (schema version 8): its bucket edges and columns.

Two buckets per decade (edges 1 and 3.2 times a power of ten), from 0.1 ms to 320 s:
neighbouring edges differ by a factor of 3.2 at most, so a percentile interpolated inside its
bucket (on a log scale, within the group's fastest and slowest call) is within that factor of
the exact value, whether calls take 0.4 ms or 4 minutes, and in practice far closer. Two a
decade, not six: every bucket is a column that each dashboard query sums over every rollup row
of its range, and those queries' time grows with the columns they sum (tests/bench/RESULTS.md,
"Latency percentiles and the endpoint and instance dimensions"): 15 buckets and the two bounds
cost the summary and breakdown about a third more than version 4's 11 coarse buckets, 43 buckets
cost them two and a half times as much. The coarse buckets of version 4
(``storage.rollup.LATENCY_BUCKET_COLUMNS``, first one 0-50 ms) stay for the rows written before
version 8 that the log could not refine.
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
]

_MANTISSAS: Final = ("1", "3.2")

LOG_BUCKET_EDGES_MS: Final[tuple[float, ...]] = tuple(
    float(f"{mantissa}e{exponent}") for exponent in range(-1, 6) for mantissa in _MANTISSAS
)
"""Upper edges (exclusive) in ms, 0.1 to 320000; bucket 0 holds calls under 0.1 ms, bucket ``i``
those with ``EDGES[i-1] <= latency_ms < EDGES[i]``, the last one 320 s and more. Each edge is the
float nearest its decimal text, so SQL comparing with the same text draws the same lines."""

LOG_BUCKET_COLUMNS: Final[tuple[str, ...]] = tuple(
    f"latency_log_{index:02d}" for index in range(len(LOG_BUCKET_EDGES_MS) + 1)
)
"""The ``usage_hourly`` columns of the buckets, in order (one more than there are edges)."""


def log_bucket(latency_ms: float) -> int:
    """The index of the log-spaced bucket that counts a call of ``latency_ms``."""
    return bisect.bisect_right(LOG_BUCKET_EDGES_MS, latency_ms)


def log_bucket_conditions(edges: tuple[float, ...] = LOG_BUCKET_EDGES_MS) -> list[str]:
    """One SQL condition on ``latency_ms`` per bucket of ``edges`` (upper edges, exclusive; by
    default the log-spaced ones), in order, for backfills and checks; the edges are written as
    their shortest decimal text, which both backends read as that float."""
    texts = [repr(edge) for edge in edges]
    conditions = [f"latency_ms < {texts[0]}"]
    conditions += [
        f"latency_ms >= {lo} AND latency_ms < {hi}" for lo, hi in itertools.pairwise(texts)
    ]
    conditions.append(f"latency_ms >= {texts[-1]}")
    return conditions
